"""Describe a checkpoint: model type, config, parameter counts, step and codebook usage.

Example:
    spidrkit info runs/tiny/checkpoints/checkpoint_00000200.pt
    spidrkit info spidr_tiny --json
"""

from __future__ import annotations

import argparse
import json

HELP = "describe a checkpoint (config, parameters, step, codebook usage)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="checkpoint file (.pt, .safetensors, fairseq) or preset name"
    )
    parser.add_argument(
        "--model-type",
        choices=["spidr", "dinosr"],
        help="model type of an official file without config (default: guess)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from spidrkit.models.info import describe

    info = describe(args.checkpoint, model_type=args.model_type)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"checkpoint   {info['source']} ({info['format']})")
    print(f"model        {info['model_type']}")
    print(f"step         {info['step']}")
    print("parameters   " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in info["parameters"].items()))
    for cb in info["codebooks"]:
        print(
            f"codebook {cb['index']} (layer {cb['layer']}): {cb['active']}/{cb['size']} codewords "
            f"with count > 1, perplexity of counts {cb['count_perplexity']:.1f}"
        )
    print("config")
    for k, v in info["config"].items():
        print(f"  {k} = {v}")
    return 0
