"""Score ZeroSpeech 2021 sWUGGY / sBLIMP and spoken / topic StoryCloze with a unit LM.

Example (units of every task wav precomputed with `spidrkit units`):

    spidrkit slm-eval --lm runs/lm_tiny --units units/tasks.jsonl \\
        --lexical sLM21/lexical/dev --syntactic sLM21/syntactic/dev \\
        --ssc sSC --tsc tSC --out results/slm

or tokenizing the task audio on the fly (k-means units of layer 6; without --kmeans, the
model's own codebook units of that layer):

    spidrkit slm-eval --lm runs/lm_opt125m --model spidr_base --layer 6 --kmeans km256.pt \\
        --lexical sLM21/lexical/dev --out results/slm

Writes <out>/<task>.txt submission files (`<filename> <score>`, e.g. lexical/dev.txt),
<out>/<task>.loglik.tsv (log-likelihood sum, mean and token count per file) and <out>/scores.json,
and prints the accuracies (sWUGGY all and in-vocab, sBLIMP overall and by type, sSC, tSC).
A folder given with --task is recognised from its gold.csv columns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spidrkit.cli.options import (
    add_device,
    add_json,
    add_layers,
    add_model,
    add_no_progress,
    add_out,
    count,
    json_to_stdout,
    write_json_output,
)
from spidrkit.errors import ConfigError

HELP = "zero-shot sWUGGY / sBLIMP / StoryCloze accuracies of a unit LM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lm", required=True, help="LM checkpoint (best.pt) or lm-train run folder"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--units",
        action="append",
        metavar="JSONL",
        help="units of the task audio files (spidrkit units); repeat for several files",
    )
    add_model(
        src,
        help="tokenize the audio with this encoder (preset or checkpoint)",
    )
    add_layers(parser, one=True, help="1-based encoder layer (with --model)")
    parser.add_argument("--kmeans", help="k-means model (spidrkit kmeans) for --model")
    for flag, what in [
        ("--lexical", "sWUGGY folder (gold.csv + wavs), e.g. sLM21/lexical/dev"),
        ("--syntactic", "sBLIMP folder, e.g. sLM21/syntactic/dev"),
        ("--ssc", "spoken StoryCloze folder"),
        ("--tsc", "topic StoryCloze folder"),
        ("--task", "any task folder, kind read from its gold.csv"),
    ]:
        parser.add_argument(flag, action="append", default=[], metavar="DIR", help=what)
    add_out(parser, help="folder for submission files and scores.json")
    parser.add_argument(
        "--normalize",
        choices=["mean", "sum"],
        default="mean",
        help="compare per-token mean log-likelihoods (default, as the SpidR paper) or sums",
    )
    parser.add_argument(
        "--no-eos", action="store_true", help="do not count log p(eos) in the scores"
    )
    parser.add_argument(
        "--no-dedup", action="store_true", help="keep repeated units (use if the LM saw them)"
    )
    parser.add_argument(
        "--max-tokens", type=count(1, 1 << 28), default=32768, help="tokens per scoring batch"
    )
    add_device(parser)
    add_no_progress(parser)
    add_json(parser, help="write the accuracies as JSON")


def run(args: argparse.Namespace) -> int:
    from spidrkit.lm.evaluate import (
        Tokenizer,
        UnitsLookup,
        evaluate_slm,
        format_table,
        write_report,
    )
    from spidrkit.lm.train import load_lm
    from spidrkit.lm.zerospeech import load_task
    from spidrkit.utils.device import resolve_device

    tasks = []
    tasks += [load_task(d, "lexical") for d in args.lexical]
    tasks += [load_task(d, "syntactic") for d in args.syntactic]
    tasks += [load_task(d, "storycloze", name=_sc_name("sSC", d, args.ssc)) for d in args.ssc]
    tasks += [load_task(d, "storycloze", name=_sc_name("tSC", d, args.tsc)) for d in args.tsc]
    tasks += [load_task(d) for d in args.task]
    if not tasks:
        raise ConfigError(
            "no task folder given: use --lexical, --syntactic, --ssc, --tsc or --task"
        )
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"two task folders have the same name {names}: rename one folder")
    device = resolve_device(args.device)
    model = load_lm(args.lm, device=device)
    if args.units:
        if args.layer is not None or args.kmeans:
            raise ConfigError("--layer and --kmeans go with --model, not --units")
        tokenize: Tokenizer = UnitsLookup.from_jsonl(*args.units, dedup=not args.no_dedup)
    else:
        from spidrkit.units import Tokenizer as EncoderTokenizer

        if args.layer is None:
            raise ConfigError("--model needs --layer N (1-based, e.g. 6)")
        tokenize = EncoderTokenizer(
            args.model, args.layer, args.kmeans, dedup=not args.no_dedup, device=device
        )
    report = evaluate_slm(
        model,
        tasks,
        tokenize,
        normalize=args.normalize,
        include_eos=not args.no_eos,
        dedup=not args.no_dedup,
        max_tokens=args.max_tokens,
        show_progress=not args.no_progress,
    )
    if args.out:
        write_report(report, args.out)
    if json_to_stdout(args):
        write_json_output(report.to_json(), args.json_out)
        return 0
    print(format_table(report.results))
    if args.out:
        print(f"submission files and scores.json in {args.out}")
    if args.json_out:
        write_json_output(report.to_json(), args.json_out)
        print(f"wrote {args.json_out}")
    return 0


def _sc_name(label: str, folder: str, all_folders: list[str]) -> str:
    """``sSC`` / ``tSC``, with the folder name appended when several are given."""
    return label if len(all_folders) == 1 else f"{label}/{Path(folder).name}"
