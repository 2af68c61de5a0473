"""The TOML configs shipped with spidrkit: pretraining (``tiny``, ``base``) and unit LM (``lm_*``).

``spidrkit train tiny`` reads ``tiny.toml`` from here; ``spidrkit config list`` shows them and
``spidrkit config copy base my.toml`` copies one to edit. The repository's ``configs/`` folder is a
link to this one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from spidrkit.errors import ConfigError


def names() -> list[str]:
    """Names of the shipped configs (file names without ``.toml``), sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def path(name: str) -> Path:
    """The file of shipped config ``name`` (``tiny`` or ``tiny.toml``)."""
    stem = name[:-5] if name.endswith(".toml") else name
    if stem not in names():
        raise ConfigError(f"{name}: no such shipped config (known: {', '.join(names())})")
    return Path(str(resources.files(__name__).joinpath(f"{stem}.toml")))


def resolve(spec: str | Path) -> Path:
    """An existing file as is; else a shipped config name (``tiny``) -> its file."""
    p = Path(spec)
    if p.exists() or p.parent != Path("."):
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    return path(stem) if stem in names() else p
