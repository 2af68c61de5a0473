"""TOML configs: writing what tomllib reads back, overrides, errors naming their dotted path."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

import pytest

from spidrkit.config import dump_toml, load_config, toml_string
from spidrkit.errors import ConfigError


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "caf\u00e9 \u4e2d\u6587",
        "emoji \U0001f600 and \U00010348 outside the BMP",
        'quote " backslash \\ tab \t newline \n cr \r',
        "controls \x00 \x01 \x1f \x7f \x08 \x0c",
        "",
    ],
)
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


def test_dump_toml_round_trips_non_bmp_and_odd_keys() -> None:
    data = {
        "name": "run \U0001f680",
        "steps": 3,
        "lr": 1e-4,
        "flags": [True, False],
        "paths": ["a/\U0001f600.wav", "b.wav"],
        "section": {"odd key": "x", "nested": {"deep": 1.5}},
        "skipped": None,
    }
    back = tomllib.loads(dump_toml(data))
    expected = {k: v for k, v in data.items() if v is not None}
    assert back == expected
    assert "\\ud83d" not in dump_toml(data)  # no surrogate escapes


@dataclass(frozen=True)
class _Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass(frozen=True)
class _Config:
    name: str = "x"
    optim: _Optim = field(default_factory=_Optim)


def test_load_config_overrides_and_errors(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(dump_toml({"name": "\U0001f600", "optim": {"lr": 0.5}}), encoding="utf-8")
    cfg = load_config(_Config, path, ["optim.betas=[0.8, 0.9]"])
    assert cfg == _Config(name="\U0001f600", optim=_Optim(lr=0.5, betas=(0.8, 0.9)))
    with pytest.raises(ConfigError) as exc:
        load_config(_Config, path, ["optim.lrr=1", "optim.lr='fast'"])
    assert "optim.lrr: unknown key" in str(exc.value) and "optim.lr" in str(exc.value)
