"""Print versions, devices and optional extras, for bug reports."""

from __future__ import annotations

import argparse

import spidrkit

HELP = "print versions and devices (paste this into bug reports)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import importlib.metadata as md
    import platform

    import torch

    print(f"spidrkit   {spidrkit.__version__}")
    print(f"python     {platform.python_version()} ({platform.platform()})")
    print(f"torch      {torch.__version__} (threads={torch.get_num_threads()})")
    print(f"cuda       {torch.cuda.is_available()}", end="")
    if torch.cuda.is_available():
        print(f" ({torch.cuda.device_count()} x {torch.cuda.get_device_name(0)})")
    else:
        print()
    for pkg in [
        "numpy",
        "soundfile",
        "soxr",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "submitit",
        "safetensors",
        "transformers",
        "espeakng-loader",
        "wandb",
    ]:
        try:
            print(f"{pkg:<10} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg:<10} (not installed)")
    return 0
