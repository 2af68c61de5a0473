"""One CLI vocabulary: --model, --layers, -o/--out, --device, --no-progress mean the same everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from spidrkit.cli.main import build_parser, main

# (command, required arguments) for the commands that take each shared option
BASE = {
    "abx": ["x.item"],
    "extract": ["wavs/", "--out", "feats"],
    "kmeans": ["--audio", "m.csv", "--out", "km.pt"],
    "units": ["m.csv", "--out", "u.jsonl"],
    "slm-eval": ["--lm", "lm/", "--units", "u.jsonl", "--lexical", "lex/"],
    "manifest": ["wavs/"],
    "synth": ["--out", "corpus"],
    "demo": [],
    "lm-train": ["lm_tiny"],
    "plot": ["abx-layers", "r.json", "--out", "p.png"],
}


def parse(argv: list[str]):
    return build_parser().parse_args(argv)


@pytest.mark.parametrize("command", ["abx", "extract"])
def test_layers_accept_commas_and_spaces(command: str) -> None:
    for spelling in (["4,5,6"], ["4", "5", "6"], ["4,", "5", "6"], ["4", "5,6"]):
        args = parse([command, *BASE[command], "--model", "spidr_tiny", "--layers", *spelling])
        assert args.layers == [4, 5, 6] and args.model == "spidr_tiny"


@pytest.mark.parametrize("command", ["kmeans", "units", "slm-eval"])
def test_one_layer_commands_accept_layer_and_layers(command: str) -> None:
    base = BASE[command]
    if command == "slm-eval":  # --units and --model exclude each other
        base = ["--lm", "lm/", "--lexical", "lex/"]
    assert parse([command, *base, "--model", "m", "--layer", "6"]).layer == 6
    assert parse([command, *base, "--model", "m", "--layers", "6"]).layer == 6
    with pytest.raises(SystemExit):
        parse([command, *base, "--model", "m", "--layers", "4,5"])


def test_bad_layers_are_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["extract", "wavs/", "--out", "f", "--layers", "four"])
    assert exc.value.code == 2
    assert "expected layer numbers" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["extract", "kmeans", "units", "slm-eval", "manifest", "synth", "demo", "plot"]
)
def test_out_and_dash_o(command: str) -> None:
    base = [a for a in BASE[command] if a not in ("--out",)]
    if "--out" in BASE[command]:  # drop the value that followed --out
        i = BASE[command].index("--out")
        base = BASE[command][:i] + BASE[command][i + 2 :]
    long = parse([command, *base, "--out", "dest"])
    short = parse([command, *base, "-o", "dest"])
    assert str(long.out) == str(short.out) == "dest"


@pytest.mark.parametrize("command", ["abx", "extract", "kmeans", "units", "slm-eval"])
def test_device_defaults_to_auto(command: str) -> None:
    assert parse([command, *BASE[command]]).device == "auto"


@pytest.mark.parametrize("command", [c for c in BASE if c != "plot"])  # plot: no progress bar
def test_no_progress_everywhere(command: str) -> None:
    assert parse([command, *BASE[command]]).no_progress is False
    assert parse([command, *BASE[command], "--no-progress"]).no_progress is True


@pytest.mark.parametrize(
    "argv",
    [
        ["slm-eval", "--lm", "l", "--units", "u", "--encoder", "x", "--lexical", "x"],
        ["manifest", "wavs/", "--output", "m.csv"],
        ["synth", "--out", "c", "--quiet"],
    ],
)
def test_old_spellings_are_gone(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "lm-train"])
def test_training_commands_share_their_options(command: str) -> None:
    from spidrkit.cli.options import training_overrides

    args = parse([command, "tiny", "--set", "run.max_steps=3", "--no-resume", "--no-progress"])
    assert args.overwrite is False
    assert training_overrides(args) == ["run.max_steps=3", "run.resume=false", "run.progress=false"]
    assert training_overrides(parse([command, "tiny"])) == []


def test_new_spellings_do_not_warn(capsys) -> None:
    parse(["slm-eval", "--lm", "l", "--model", "spidr_tiny", "--lexical", "x"])
    parse(["synth", "--out", "c", "--no-progress"])
    assert capsys.readouterr().err == ""


def test_extract_reads_a_csv_without_num_samples(tmp_path) -> None:
    sf = pytest.importorskip("soundfile")
    import torch

    rng = np.random.default_rng(0)
    (tmp_path / "wavs").mkdir()
    for name, n in [("a", 8000), ("b", 12000)]:
        sf.write(tmp_path / "wavs" / f"{name}.wav", rng.standard_normal(n) * 0.1, 16000)
    (tmp_path / "list.csv").write_text("fileid,path\na,wavs/a.wav\nb,wavs/b.wav\n")
    out = tmp_path / "feats"
    code = main(
        [
            "extract",
            str(tmp_path / "list.csv"),
            "--baseline",
            "mfcc",
            "-o",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    a, b = torch.load(out / "a.pt", weights_only=True), torch.load(out / "b.pt", weights_only=True)
    assert a.shape[0] < b.shape[0] and a.shape[1] == b.shape[1] == 39


def test_shipped_configs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # names resolve to the package's files from anywhere
    assert main(["config", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["adapt", "adapt_mfcc", "base", "lm_opt125m", "lm_tiny", "small", "tiny"]
    assert main(["config", "copy", "base", "my.toml"]) == 0
    assert (tmp_path / "my.toml").read_text().startswith("# SpidR base")
    assert main(["config", "copy", "base", "my.toml"]) == 2  # no silent overwrite
    assert main(["check-config", "tiny", "--json", "-"]) == 0
    assert main(["check-config", "lm_tiny", "--json", "-"]) == 0
    capsys.readouterr()
    assert main(["check-config", "tinyy"]) == 2
    assert "shipped configs: adapt, adapt_mfcc, base" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ --json

JSON_COMMANDS = {
    "abx": ["x.item", "feats/"],
    "unit-quality": ["labels.jsonl", "units.jsonl"],
    "info": ["spidr_tiny"],
    "check-config": ["tiny"],
    "slm-eval": BASE["slm-eval"],
}


@pytest.mark.parametrize("command", sorted(JSON_COMMANDS))
def test_json_takes_a_path_everywhere(command: str, capsys) -> None:
    args = parse([command, *JSON_COMMANDS[command], "--json", "out.json"])
    assert args.json_out == "out.json"
    assert parse([command, *JSON_COMMANDS[command], "--json", "-"]).json_out == "-"
    assert parse([command, *JSON_COMMANDS[command]]).json_out is None
    with pytest.raises(SystemExit) as exc:  # the old bare flag: a usage error with the new spelling
        parse([command, *JSON_COMMANDS[command], "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--json needs a file to write" in err and "'--json -'" in err


def test_json_file_and_stdout_hold_the_same_data(tmp_path, capsys) -> None:
    import json

    assert main(["check-config", "tiny", "--json", "-"]) == 0
    captured = capsys.readouterr()
    on_stdout = json.loads(captured.out)  # nothing but the JSON on stdout
    assert "train_manifests" in captured.err  # the note moved to stderr
    assert main(["check-config", "tiny", "--json", str(tmp_path / "c.json")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# resolved from tiny") and "[optimizer]" in text  # TOML text as before
    assert json.loads((tmp_path / "c.json").read_text()) == on_stdout
    assert on_stdout["model"]["encoder_embed_dim"] == 64

    assert main(["info", "spidr_tiny", "--json", str(tmp_path / "i.json")]) == 0
    assert capsys.readouterr().out.startswith("checkpoint ")
    assert main(["info", "spidr_tiny", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((tmp_path / "i.json").read_text())


def test_docs_config_list_is_the_real_output(capsys) -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    block = doc.split("`spidrkit config list` prints each name")[1].split("```text\n")[1]
    block = block.split("```")[0]
    assert main(["config", "list"]) == 0
    real = capsys.readouterr().out
    assert block == real, "docs/cli.md: replace the `config list` block with the real output"
