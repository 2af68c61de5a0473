"""--threads on the long commands, and the sleeping OpenMP wait policy set by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from spidrkit.cli.main import build_parser, main
from spidrkit.cli.options import THREADED_COMMANDS, apply_threads
from spidrkit.errors import ConfigError


def test_long_commands_take_threads():
    parser = build_parser()
    for name in sorted(THREADED_COMMANDS):
        sub = parser._subparsers._group_actions[0].choices[name]  # noqa: SLF001
        assert any("--threads" in a.option_strings for a in sub._actions), name  # noqa: SLF001
    env = parser._subparsers._group_actions[0].choices["env"]  # noqa: SLF001
    assert not any("--threads" in a.option_strings for a in env._actions)  # noqa: SLF001


def test_apply_threads_sets_and_validates():
    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1
        apply_threads(None)  # torch's default is left alone
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError, match="--threads must be >= 1"):
            apply_threads(0)
    finally:
        torch.set_num_threads(before)


def test_cli_bad_threads_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["abx", str(tmp_path / "x.item"), str(tmp_path), "--threads", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "spidrkit abx: error: argument --threads: 0 is not in [1, 4096] (see spidrkit abx --help)"
    ]


def test_cli_sets_passive_wait_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import os, sys; from spidrkit.cli.main import main; "
        "assert 'torch' not in sys.modules; main(['env']); "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE"
