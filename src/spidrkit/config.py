"""Dataclass configs from TOML: unknown keys and bad values are errors naming their dotted path.

A config is a (possibly nested) dataclass. ``load_config(Cls, "run.toml", ["optimizer.lr=1e-4"])`` reads the
TOML, applies ``--set`` overrides, type-checks every field and calls ``validate()`` on each section if it
has one; all problems are collected and raised at once as a :class:`ConfigError`.

A config class declares the domain of each numeric field in ``RANGES`` (field name ->
:class:`Range`; inherited entries merge along the class hierarchy): :func:`field_problems` checks
them generically (tuples of numbers element-wise) before the class's own ``validate()``, which only
holds the rules between fields. ``tests/test_config_domains.py`` generates values inside and outside
every declared domain from this schema, and fails for a numeric field without a domain.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args, get_origin, get_type_hints

from spidrkit.configs import names, resolve
from spidrkit.errors import ConfigError

T = TypeVar("T")

BIG = 1 << 40
"""Default upper cap of counts (steps, seeds, ...): large enough for any run, small enough that
arithmetic on it stays exact in float64 and nothing sized from it is allocated unbounded."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The domain of a numeric field: ``lo <= x <= hi`` (``lo_open``/``hi_open``: strict).

    ``None`` leaves a side unbounded; floats must also be finite (checked by type). ``zero_ok``:
    ``0`` is accepted as a sentinel value outside the range ("0 disables").
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    zero_ok: bool = False

    def describe(self) -> str:
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        text = f"in {left}{lo}, {hi}{right}"
        return text + " or 0" if self.zero_ok else text

    def contains(self, x: float) -> bool:
        if self.zero_ok and x == 0:
            return True
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def count(lo: int = 0, hi: int = BIG) -> Range:
    """An integer count in ``[lo, hi]``."""
    return Range(lo, hi)


SEED = Range(0, (1 << 63) - 1)
"""A random seed (what torch, numpy and Python's random all accept)."""
UNIT = Range(0.0, 1.0)
"""A fraction in [0, 1]."""
PROB = Range(0.0, 1.0, hi_open=True)
"""A dropout-like rate in [0, 1)."""


def ranges_of(cls: type) -> dict[str, Range]:
    """The declared ``RANGES`` of ``cls`` and its bases (the most derived class wins)."""
    out: dict[str, Range] = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get("RANGES", {}))
    return out


def _numbers(value: Any) -> list[Any] | None:
    """The numbers of a field value (itself, or the leaves of nested tuples/lists); None if any
    leaf is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for v in value:
            sub = _numbers(v)
            if sub is None:
                return None
            out += sub
        return out
    return None


def field_problems(obj: Any, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``field: problem`` for each numeric field of config ``obj`` outside its declared Range
    (fields in ``skip``, already reported, are left out)."""
    problems = []
    for name, rng in ranges_of(type(obj)).items():
        if name in skip:
            continue
        value = getattr(obj, name, None)
        if value is None:
            continue  # an optional field left unset
        numbers = _numbers(value)
        if numbers is None:
            continue  # wrong type: reported by the type check
        bad = [x for x in numbers if not rng.contains(x)]
        if bad:
            shown = value if isinstance(value, int | float) else bad[0]
            problems.append(f"{name}: {shown!r} is not {rng.describe()}")
    return problems


def ranged(validate: Callable[[Any], list[str]]) -> Callable[[Any], list[str]]:
    """Decorate a config's ``validate()`` (the rules between fields) so that it returns the
    out-of-range fields first, then its rules: a direct call (``DataConfig(...).validate()``)
    reports everything. A rule that cannot be evaluated on out-of-range values (a division by a
    zero its field's range refuses) is left out: that field's own problem is reported."""

    @functools.wraps(validate)
    def wrapper(self: Any) -> list[str]:
        problems = field_problems(self)
        try:
            return problems + list(validate(self) or [])
        except (ZeroDivisionError, TypeError, ValueError, OverflowError):
            if not problems:
                raise
            return problems

    return wrapper


def check(obj: T) -> T:
    """Raise a ConfigError listing every problem of a config built in code (ranges, then the
    class's ``validate()``); returns ``obj``."""
    problems = field_problems(obj)
    validate = getattr(obj, "validate", None)
    if callable(validate) and not problems:
        problems = list(validate() or [])
    if problems:
        raise ConfigError(f"invalid {type(obj).__name__}: " + "; ".join(problems))
    return obj


def _check_value(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    """Coerce ``value`` to type ``tp`` or record an error; returns the coerced value."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in get_args(tp):
            errors.append(f"{path}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            sub: list[str] = []
            out = _check_value(arg, value, path, sub)
            if not sub:
                return out
        errors.append(f"{path}: {value!r} does not fit {tp}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a table, got {value!r}")
            return value
        return _build(cast(type, tp), value, path + ".", errors)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(f"{path}: expected a list, got {value!r}")
            return value
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                errors.append(f"{path}: expected {len(args)} values, got {len(value)}")
                return tuple(value)
            return tuple(
                _check_value(a, v, f"{path}[{i}]", errors)
                for i, (a, v) in enumerate(zip(args, value))
            )
        elem = args[0] if args else Any
        out = [_check_value(elem, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a table, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {value!r}")
            return value
        if not math.isfinite(value):
            # NaN passes every `x < lo` range check and inf breaks schedules: refuse both here
            errors.append(f"{path}: {value!r} is not a finite number")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            errors.append(f"{path}: expected a path, got {value!r}")
            return value
        return Path(value)
    return value


def _build(cls: type[T], data: dict[str, Any], prefix: str, errors: list[str]) -> T:
    hints = get_type_hints(cls)
    before = len(errors)
    fields = dataclasses.fields(cast(Any, cls))
    names = {f.name for f in fields if f.init}
    for key in data:
        if key not in names:
            errors.append(f"{prefix}{key}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in fields:
        if f.init and f.name in data:
            kwargs[f.name] = _check_value(hints[f.name], data[f.name], prefix + f.name, errors)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        errors.append(f"{prefix.rstrip('.') or cls.__name__}: {exc}")
        return None  # type: ignore[return-value]
    typed_wrong = {e[len(prefix) :].split(":")[0].split("[")[0] for e in errors[before:]}
    validate = getattr(obj, "validate", None)
    if not callable(validate):
        errors += [f"{prefix}{p}" for p in field_problems(obj, skip=typed_wrong)]
    else:  # a @ranged validate() reports the ranges, then the rules between fields
        try:
            problems = validate() or []
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            if len(errors) == before:
                raise
            problems = []  # range checks on a value of the wrong type: its type error is enough
        for problem in problems:  # a field with a type error is reported once, by its type
            if problem.split(":")[0].split("[")[0] not in typed_wrong:
                errors.append(f"{prefix}{problem}")
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (the value is TOML, or a bare string) into (path, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``section.key=value`` override set."""
    data = json.loads(json.dumps(data, default=str))
    for text in overrides or []:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return data


def from_dict(cls: type[T], data: dict[str, Any], overrides: list[str] | None = None) -> T:
    """Build and validate a config dataclass from a dict; every problem is reported at once."""
    data = apply_overrides(data, overrides)
    errors: list[str] = []
    obj = _build(cls, data, "", errors)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return obj


MAX_CONFIG_BYTES = 4 << 20
"""Largest config file read (configs are a few KB)."""


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, or a shipped config by name (``tiny``, ``base``, ``lm_tiny``: see
    :mod:`spidrkit.configs`); a missing or malformed file is a ConfigError naming it."""
    path = resolve(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # /dev/zero or a wrong file: bounded
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: over {MAX_CONFIG_BYTES >> 20} MiB: not a config file (give the TOML)"
            )
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (shipped configs: {', '.join(names())})"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a TOML config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): not a TOML file") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Read a TOML file into config class ``cls`` (see :func:`from_dict`)."""
    data = read_toml(path)
    try:
        return from_dict(cls, data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain TOML/JSON-friendly data (paths as strings, tuples as lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(cfg)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, every other
    character (non-BMP ones included) written as itself, as TOML requires UTF-8 text."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def dump_toml(data: dict[str, Any]) -> str:
    """Write nested dicts of scalars/lists as TOML (enough for our configs; None values are skipped)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str | Path):
            return toml_string(str(v))
        if isinstance(v, list | tuple):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    def table(d: dict[str, Any], name: str) -> None:
        simple = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if name and simple:
            lines.append(f"[{name}]")
        for k, v in simple.items():
            lines.append(f"{_toml_key(k)} = {scalar(v)}")
        if simple:
            lines.append("")
        for k, v in nested.items():
            table(v, f"{name}.{_toml_key(k)}" if name else _toml_key(k))

    table(data, "")
    return "\n".join(lines)
