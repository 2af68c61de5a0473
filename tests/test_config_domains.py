"""Domains generated from the schema (issue 18, class 1): every numeric config field and every
numeric CLI option declares its domain; values inside it are accepted (or refused only by a rule
between fields), values outside it are refused naming the field, and accepted values are usable.

Nothing here lists cases by hand: the fields come from the dataclasses, the options from the parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, get_args, get_origin, get_type_hints

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spidrkit.cli.main import build_parser
from spidrkit.cli.options import Number
from spidrkit.config import Range, check, from_dict, ranges_of
from spidrkit.data.config import DataConfig, MaskingConfig
from spidrkit.data.masking import compute_mask_indices
from spidrkit.errors import ConfigError
from spidrkit.eval.abx.result import ABXConfig
from spidrkit.lm.config import (
    LMDataConfig,
    LMOptimizerConfig,
    LMRunConfig,
    LMValidationConfig,
    UnitLMConfig,
)
from spidrkit.models.config import DinoSRConfig, SpidRConfig
from spidrkit.train.config import OptimizerConfig, RunConfig, ValidationConfig
from spidrkit.train.optim import build_scheduler
from spidrkit.units.kmeans import KMeansConfig

CONFIGS = [
    RunConfig,
    DataConfig,
    MaskingConfig,
    OptimizerConfig,
    ValidationConfig,
    SpidRConfig,
    DinoSRConfig,
    UnitLMConfig,
    LMDataConfig,
    LMOptimizerConfig,
    LMValidationConfig,
    LMRunConfig,
    KMeansConfig,
    ABXConfig,
]
SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _leaf(tp: Any) -> type | None:
    """int or float when a field of type ``tp`` holds numbers (optional, or tuples of them)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        kinds = {_leaf(a) for a in get_args(tp) if a is not type(None)}
        return next(iter(kinds)) if len(kinds) == 1 else None
    if origin in (tuple, list):
        kinds = {_leaf(a) for a in get_args(tp) if a is not Ellipsis}
        return next(iter(kinds)) if len(kinds) == 1 else None
    return tp if tp in (int, float) else None


def numeric_fields(cls: type) -> dict[str, type]:
    hints = get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind = _leaf(hints[f.name])
        if kind is not None:
            out[f.name] = kind
    return out


FIELDS = [(cls, name, kind) for cls in CONFIGS for name, kind in numeric_fields(cls).items()]


def test_every_numeric_field_declares_its_domain():
    missing = [f"{cls.__name__}.{name}" for cls, name, _ in FIELDS if name not in ranges_of(cls)]
    assert not missing, f"numeric config fields without a Range: {missing}"
    assert len(FIELDS) > 80  # the schema walk found the fields


def _shaped(cls: type, name: str, x: Any) -> Any:
    """``x`` in the shape of the field (a tuple field gets a tuple of the right arity)."""
    default = getattr(cls(), name)
    if isinstance(default, tuple):
        if default and isinstance(default[0], tuple):  # conv layers: (channels, kernel, stride)
            return [[x, 2, 2]] + [list(t) for t in default[1:]]
        return [x] * len(default)
    return x


def _inside(rng: Range, kind: type) -> st.SearchStrategy:
    lo = rng.lo if rng.lo is not None else -1e6
    hi = rng.hi if rng.hi is not None else 1e6
    if kind is int:
        a = math.floor(lo) + (1 if rng.lo_open and float(lo).is_integer() else 0)
        b = math.ceil(hi) - (1 if rng.hi_open and float(hi).is_integer() else 0)
        a, b = math.ceil(max(a, lo)), math.floor(min(b, hi))
        return st.one_of(st.just(a), st.just(b), st.integers(a, b))
    return st.one_of(
        st.floats(lo, hi, exclude_min=rng.lo_open, exclude_max=rng.hi_open),
        *([st.just(float(lo))] if not rng.lo_open else []),
        *([st.just(float(hi))] if not rng.hi_open else []),
    )


def _outside(rng: Range, kind: type) -> st.SearchStrategy:
    options = []
    if rng.lo is not None:
        below = rng.lo if rng.lo_open else (rng.lo - 1 if kind is int else rng.lo - 1e-3)
        if not (rng.zero_ok and below == 0):
            options.append(st.just(kind(below)))
            options.append(
                st.integers(max_value=int(math.floor(below)) - 1).map(kind)
                if kind is int
                else st.floats(max_value=below, allow_nan=False, allow_infinity=False)
            )
    if rng.hi is not None:
        above = rng.hi if rng.hi_open else (rng.hi + 1 if kind is int else rng.hi * 1.001 + 1e-3)
        options.append(st.just(kind(above)))
        options.append(
            st.integers(min_value=int(math.ceil(above))).map(kind)
            if kind is int
            else st.floats(min_value=above, allow_nan=False, allow_infinity=False)
        )
    if kind is float:
        options += [st.just(math.nan), st.just(math.inf), st.just(-math.inf)]
    return st.one_of(*options)


def _build(cls: type, name: str, value: Any) -> Any:
    return from_dict(cls, {name: _shaped(cls, name, value)})


def _field_error(exc: ConfigError, name: str) -> bool:
    return any(line.strip().startswith((f"{name}:", f"{name}[")) for line in str(exc).splitlines())


@pytest.mark.parametrize(
    ("cls", "name", "kind"), FIELDS, ids=[f"{c.__name__}.{n}" for c, n, _ in FIELDS]
)
@SETTINGS
@given(data=st.data())
def test_values_outside_a_domain_are_refused_naming_the_field(cls, name, kind, data):
    rng = ranges_of(cls)[name]
    value = data.draw(_outside(rng, kind))
    with pytest.raises(ConfigError) as exc:
        _build(cls, name, value)
    assert _field_error(exc.value, name), str(exc.value)


@pytest.mark.parametrize(
    ("cls", "name", "kind"), FIELDS, ids=[f"{c.__name__}.{n}" for c, n, _ in FIELDS]
)
@SETTINGS
@given(data=st.data())
def test_values_inside_a_domain_pass_its_range_check(cls, name, kind, data):
    rng = ranges_of(cls)[name]
    value = data.draw(_inside(rng, kind))
    try:
        cfg = _build(cls, name, value)
    except ConfigError as exc:  # only a rule between fields may refuse it, never the range
        assert f"{name}: {value!r} is not in" not in str(exc), str(exc)
        return
    check(cfg)  # the same config built in code passes the same checks


@SETTINGS
@given(
    mask_prob=_inside(ranges_of(MaskingConfig)["mask_prob"], float),
    mask_length=st.integers(1, 1 << 14),
    min_masks=st.integers(0, 1 << 14),
    selection=st.sampled_from(["static", "uniform", "normal", "poisson"]),
    no_overlap=st.booleans(),
    frames=st.integers(1, 400),
)
def test_any_accepted_masking_config_masks_a_batch(
    mask_prob, mask_length, min_masks, selection, no_overlap, frames
):
    try:
        cfg = from_dict(
            MaskingConfig,
            {
                "mask_prob": mask_prob,
                "mask_length": mask_length,
                "min_masks": min_masks,
                "mask_selection": selection,
                "no_mask_overlap": no_overlap,
            },
        )
    except ConfigError:
        return
    idx = compute_mask_indices((2, frames), None, cfg, rng=np.random.default_rng(0))
    assert idx.shape[0] == 2 and idx.shape[1] <= frames
    assert (idx >= 0).all() and (idx < frames).all()


@SETTINGS
@given(data=st.data())
def test_any_accepted_optimizer_config_gives_finite_learning_rates(data):
    values = {
        name: _shaped(OptimizerConfig, name, data.draw(_inside(rng, kind)))
        for name, kind in numeric_fields(OptimizerConfig).items()
        if (rng := ranges_of(OptimizerConfig)[name]) is not None and data.draw(st.booleans())
    }
    values["scheduler"] = data.draw(st.sampled_from(["tristage", "cosine", "constant"]))
    for steps in ("warmup_steps", "hold_steps", "decay_steps"):
        if steps in values:
            values[steps] = min(values[steps], 1000)
    try:
        cfg = from_dict(OptimizerConfig, values)
    except ConfigError:
        return
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, max_steps=50)
    for _ in range(50):
        lr = sched.get_last_lr()[0]
        assert math.isfinite(lr) and 0.0 <= lr <= cfg.lr * (1 + 1e-9), (lr, cfg)
        opt.step()
        sched.step()


# --------------------------------------------------------------------------- command-line options


def _numeric_options() -> list[tuple[str, str, Number]]:
    out = []
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    for name, parser in sub.choices.items():
        for action in parser._actions:  # noqa: SLF001
            if action.option_strings and action.type is not None:
                out.append((name, action.option_strings[-1], action.type))
    return out


OPTIONS = _numeric_options()


def test_every_numeric_option_is_a_bounded_number():
    raw = [(cmd, opt) for cmd, opt, tp in OPTIONS if tp in (int, float)]
    assert not raw, f"options typed int/float without a domain: {raw}"
    assert sum(isinstance(tp, Number) for _, _, tp in OPTIONS) >= 30


@pytest.mark.parametrize(
    ("command", "option", "number"),
    [o for o in OPTIONS if isinstance(o[2], Number)],
    ids=[f"{c} {o}" for c, o, t in OPTIONS if isinstance(t, Number)],
)
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_out_of_domain_options_are_one_line_usage_errors(command, option, number, data, capsys):
    rng = Range(number.lo, number.hi, lo_open=number.lo_open)
    value = data.draw(
        st.one_of(_outside(rng, number.kind), st.sampled_from(["x", "1e", "", "0x10"]))
    )
    if number.kind is float and isinstance(value, str) and value == "0x10":
        return
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, f"{option}={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0] and "error:" in err[0], err


@pytest.mark.parametrize(
    ("command", "option", "number"),
    [o for o in OPTIONS if isinstance(o[2], Number)],
    ids=[f"{c} {o}" for c, o, t in OPTIONS if isinstance(t, Number)],
)
@settings(max_examples=5, deadline=None, derandomize=True)
@given(data=st.data())
def test_in_domain_options_parse_to_their_value(command, option, number, data):
    rng = Range(number.lo, number.hi, lo_open=number.lo_open)
    value = data.draw(_inside(rng, number.kind))
    assert number(repr(value) if number.kind is float else str(value)) == value
