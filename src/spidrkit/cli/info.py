"""Describe a checkpoint: model type, config, parameter counts, step and codebook usage.

Example:
    spidrkit info runs/tiny/checkpoints/checkpoint_00000200.pt
    spidrkit info spidr_tiny --json -          # the same as JSON on stdout
    spidrkit info spidr_tiny --json info.json  # text on stdout, JSON in info.json
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import add_json, json_to_stdout, write_json_output

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
    add_json(parser, help="write the description as JSON")


def run(args: argparse.Namespace) -> int:
    from spidrkit.models.info import describe

    info = describe(args.checkpoint, model_type=args.model_type)
    if json_to_stdout(args):
        write_json_output(info, args.json_out)
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
    if args.json_out:
        write_json_output(info, args.json_out)
        print(f"wrote {args.json_out}")
    return 0
