"""Convert checkpoints: original fairseq DinoSR -> spidrkit, spidrkit <-> safetensors.

The output format follows the destination's extension: ``.safetensors`` or ``.pt`` (the official
``{"model": state_dict}`` layout, with ``config.json`` written beside it).

Examples:
    spidrkit convert dinosr.ckpt dinosr_original.pt            # fairseq DinoSR -> spidrkit/official
    spidrkit convert spidr_base.pt spidr_base.safetensors      # -> safetensors
    spidrkit convert spidr_base.safetensors spidr_base.pt      # and back
"""

from __future__ import annotations

import argparse
import logging

HELP = "convert checkpoints (fairseq DinoSR -> spidrkit, spidrkit <-> safetensors)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", help="source checkpoint (.pt official/spidrkit, fairseq .ckpt, .safetensors)"
    )
    parser.add_argument("dst", help="destination (.pt or .safetensors)")
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
    from spidrkit.models.checkpoint import load_model, save_model, save_safetensors
    from spidrkit.utils.files import refuse_clobbering

    refuse_clobbering({"dst": args.dst}, [args.src])
    model = load_model(args.src, model_type=args.model_type)
    if str(args.dst).endswith(".safetensors"):
        save_safetensors(model, args.dst)
    else:
        save_model(model, args.dst, write_config_json=not args.no_config_json)
    logging.getLogger("spidrkit").info("wrote %s", args.dst)
    return 0
