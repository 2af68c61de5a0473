"""The core CLI: --help everywhere, info, convert to safetensors and back, clear one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from spidrkit.cli.main import COMMANDS, build_parser, main
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import load_model, save_model


def _command_modules() -> set[str]:
    """Modules of spidrkit.cli that define a subcommand (HELP, add_arguments, run)."""
    import importlib
    import pkgutil

    import spidrkit.cli

    found = set()
    for info in pkgutil.iter_modules(spidrkit.cli.__path__):
        module = importlib.import_module(f"spidrkit.cli.{info.name}")
        if all(hasattr(module, a) for a in ("HELP", "add_arguments", "run")):
            found.add(info.name)
    return found


def test_every_command_module_is_registered_and_has_help(capsys) -> None:
    assert {module for _, module in COMMANDS} == _command_modules()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [name for name, _ in COMMANDS]
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: spidrkit " + name in capsys.readouterr().out


def test_a_command_that_fails_to_import_is_an_error(monkeypatch) -> None:
    import spidrkit.cli.main as cli_main

    monkeypatch.setattr(cli_main, "COMMANDS", [*COMMANDS, ("ghost", "no_such_module")])
    with pytest.raises(
        ImportError, match="spidrkit ghost: cannot import spidrkit.cli.no_such_module"
    ):
        cli_main.build_parser()


def test_info_and_convert(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = build_model("spidr", PRESETS["spidr_tiny"].config)
    save_model(model, tmp_path / "a" / "m.pt")
    assert main(["info", str(tmp_path / "a" / "m.pt"), "--json", "-"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "spidr" and info["config"]["encoder_embed_dim"] == 64
    assert info["parameters"]["student"] == sum(p.numel() for p in model.student.parameters())
    assert main(["convert", str(tmp_path / "a" / "m.pt"), str(tmp_path / "m.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "b" / "m.pt")]) == 0
    back = load_model(tmp_path / "b" / "m.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_errors_are_one_line(tmp_path, capsys) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["info", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spidrkit info: error:") and "bad.pt" in err and "\n" not in err


def test_check_config_knows_lm_configs(capsys) -> None:
    from pathlib import Path

    lm_toml = Path(__file__).parent.parent / "configs" / "lm_tiny.toml"
    assert main(["check-config", str(lm_toml), "--json", "-"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["preset"] == "lm_tiny" and "lr" in resolved["optimizer"]
    assert main(["check-config", str(lm_toml), "--set", "optimizer.lrr=1"]) == 2
    assert "optimizer.lrr: unknown key" in capsys.readouterr().err
