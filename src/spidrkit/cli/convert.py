"""Convert checkpoints: original fairseq DinoSR -> spidrkit, spidrkit <-> safetensors, and
self-describing model folders.

The output format follows the destination: ``.safetensors``, ``.pt`` (the official
``{"model": state_dict}`` layout, with ``config.json`` written beside it), or a folder (a name
without one of these extensions): ``config.json`` + ``model.safetensors``, the layout models are
shared in on model hubs, loaded back by ``spidrkit.load(folder)`` without any training config.

Examples:
    spidrkit convert dinosr.ckpt dinosr_original.pt            # fairseq DinoSR -> spidrkit/official
    spidrkit convert spidr_base.pt spidr_base.safetensors      # -> safetensors
    spidrkit convert spidr_base.safetensors spidr_base.pt      # and back
    spidrkit convert runs/adapt/checkpoints/checkpoint_00000300.pt my_model   # -> my_model/
    python -c "import spidrkit; print(spidrkit.load('my_model').num_layers)"
"""

from __future__ import annotations

import argparse
import logging

HELP = "convert checkpoints (fairseq DinoSR -> spidrkit, spidrkit <-> safetensors, model folders)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src",
        help="source checkpoint (.pt official/spidrkit, fairseq .ckpt, .safetensors) or model folder",
    )
    parser.add_argument(
        "dst",
        help="destination: .pt, .safetensors, or a folder (a name without extension, or an "
        "existing folder): config.json + model.safetensors",
    )
    parser.add_argument(
        "--model-type",
        choices=["spidr", "dinosr"],
        help="model type of an official file without config (default: guess)",
    )
    parser.add_argument(
        "--no-config-json",
        action="store_true",
        help="do not write config.json beside a .pt destination",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spidrkit.errors import ConfigError
    from spidrkit.models.checkpoint import (
        load_model,
        save_model,
        save_model_folder,
        save_safetensors,
    )
    from spidrkit.utils.files import refuse_clobbering

    refuse_clobbering({"dst": args.dst}, [args.src])
    dst = Path(args.dst)
    is_folder = dst.is_dir() or str(args.dst).endswith("/") or dst.suffix == ""
    if not is_folder and dst.suffix not in (".pt", ".safetensors"):
        raise ConfigError(
            f"{args.dst}: unknown destination type {dst.suffix!r}; use .pt, .safetensors or a "
            "folder name (config.json + model.safetensors)"
        )
    model = load_model(args.src, model_type=args.model_type)
    if is_folder:
        save_model_folder(model, dst)
    elif dst.suffix == ".safetensors":
        save_safetensors(model, args.dst)
    else:
        save_model(model, args.dst, write_config_json=not args.no_config_json)
    logging.getLogger("spidrkit").info("wrote %s", args.dst)
    return 0
