"""Write a manifest (fileid,path,num_samples) from audio folders or uncompressed tar archives,
or check an existing one.

examples:
  spidrkit manifest LibriSpeech/train-clean-100 -o manifests/train-clean-100.csv
  spidrkit manifest wavs/ -o train.csv --ext wav,flac --skip-errors
  spidrkit manifest shard-000.tar shard-001.tar -o shards.csv     # byte offsets, no extraction
  spidrkit manifest wavs/ -o train.tsv --format tsv               # fairseq TSV
  spidrkit manifest --validate train.csv                          # every missing/unreadable file
  spidrkit manifest --validate train.csv --decode                 # decode everything (slower)

num_samples is the length at 16 kHz after resampling (floor(frames * 16000 / sr + 0.5)).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from spidrkit.cli.options import add_no_progress, add_out, count
from spidrkit.errors import DataError
from spidrkit.utils.files import refuse_clobbering

HELP = "build a manifest from audio folders or tar archives, or --validate one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="*", type=Path, help="audio folders or uncompressed .tar archives"
    )
    add_out(parser, type=Path, help="manifest to write (.csv or .tsv)")
    parser.add_argument(
        "--ext",
        default=None,
        help="comma-separated audio extensions to include (default: every format spidrkit "
        "decodes: wav, flac, ogg, opus, mp3)",
    )
    parser.add_argument(
        "--format",
        choices=["csv", "tsv"],
        default=None,
        help="csv (official columns) or fairseq tsv (default: from the output suffix, else csv)",
    )
    parser.add_argument(
        "--skip-errors",
        action="store_true",
        help="leave unreadable files out (logged) instead of failing",
    )
    parser.add_argument(
        "--validate",
        type=Path,
        metavar="MANIFEST",
        help="check that every row of MANIFEST is readable and has the right length",
    )
    parser.add_argument(
        "--decode", action="store_true", help="with --validate: decode whole files, not headers"
    )
    parser.add_argument(
        "--tolerance",
        type=count(0),
        default=0,
        help="with --validate: allowed num_samples difference (e.g. for mp3) (default: 0)",
    )
    parser.add_argument(
        "--workers", type=count(1, 1024), default=None, help="header-reading threads"
    )
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from spidrkit.audio.io import AUDIO_EXTENSIONS
    from spidrkit.data.manifest import Manifest, first_duplicate, write_manifest
    from spidrkit.data.scan import scan_directory, scan_tar
    from spidrkit.data.validate import validate_manifest

    show = not args.no_progress
    if args.validate is not None:
        if args.inputs or args.out:
            raise DataError("--validate takes only the manifest; drop the inputs and -o")
        report = validate_manifest(
            args.validate,
            decode=args.decode,
            tolerance=args.tolerance,
            show_progress=show,
            num_workers=args.workers,
        )
        print(report.summary())
        return 0 if report.ok else 1
    if not args.inputs or args.out is None:
        raise DataError("give audio folders or tar archives and -o OUT (or --validate M.csv)")
    refuse_clobbering({"-o": args.out}, list(args.inputs))
    if args.out.suffix.lower() in (*AUDIO_EXTENSIONS, ".tar") or args.out.is_dir():
        raise DataError(
            f"-o {args.out}: names an audio file, an archive or a folder; a manifest is a .csv or "
            ".tsv file"
        )
    exts = [e for e in args.ext.split(",") if e.strip()] if args.ext else AUDIO_EXTENSIONS
    manifests = []
    for src in args.inputs:
        kwargs = dict(
            extensions=exts,
            skip_errors=args.skip_errors,
            show_progress=show,
            num_workers=args.workers,
        )
        if src.is_dir():
            manifests.append(scan_directory(src, **kwargs))
        elif src.is_file() and src.suffix == ".tar":
            manifests.append(scan_tar(src, **kwargs))
        elif src.is_file():
            raise DataError(f"{src}: expected a folder or an uncompressed .tar archive")
        else:
            raise DataError(f"{src}: not found")
    manifest = Manifest.concat(manifests)
    dup = first_duplicate(manifest.fileids)
    if dup is not None:  # e.g. a.wav and a.flac, or one name in two inputs
        a, b = dup
        raise DataError(
            f"{manifest.describe(a)} and {manifest.describe(b)} would share the fileid "
            f"{manifest.fileids[a]!r} (fileids name output files); rename or remove one"
        )
    fmt: Literal["csv", "tsv"] = args.format or ("tsv" if args.out.suffix == ".tsv" else "csv")
    write_manifest(manifest, args.out, format=fmt)
    print(
        f"wrote {args.out}: {len(manifest)} utterances, {manifest.hours:.2f} h at 16 kHz "
        f"({manifest.kind})"
    )
    return 0
