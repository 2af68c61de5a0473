"""Fuzzing every input parser with hypothesis: any bytes give a parsed result or the parser's own
one-line error (DataError / ConfigError), never another exception; well-formed inputs round-trip.

Example counts are modest (the whole file runs in well under 30 s on 2 cores)."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spidrkit.errors import ConfigError, DataError

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# lines made of characters that matter to the parsers, plus arbitrary text and bytes
_ALPHABET = string.ascii_letters + string.digits + ",\t\"' .-_/\\:#[]{}=\n\r\x00é"
text_lines = st.lists(st.text(alphabet=_ALPHABET, max_size=40), max_size=8).map("\n".join)
any_bytes = st.one_of(
    st.binary(max_size=300), text_lines.map(lambda t: t.encode("utf-8", "surrogatepass"))
)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _one_line(exc: Exception) -> None:
    assert str(exc).strip(), "empty error message"


# ------------------------------------------------------------------------------------ manifests

fileid = st.text(alphabet=string.ascii_letters + string.digits + "_-/", min_size=1, max_size=12)


@FUZZ
@given(
    header=st.sampled_from(["fileid,path,num_samples\n", "x\n", ""]),
    body=any_bytes,
)
def test_manifest_reader_never_crashes(work, header, body):
    from spidrkit.data.manifest import read_manifest

    path = work / "m.csv"
    path.write_bytes(header.encode() + body)
    try:
        m = read_manifest(path)
    except DataError as exc:
        _one_line(exc)
        return
    assert len(set(m.fileids.tolist())) == len(m)
    assert (m.num_samples >= 0).all()


@FUZZ
@given(
    rows=st.dictionaries(
        fileid.filter(lambda s: not s.startswith("/")),
        st.integers(0, 10**12),
        min_size=1,
        max_size=20,
    )
)
def test_manifest_round_trip(work, rows):
    from spidrkit.data.manifest import read_manifest

    path = work / "rt.csv"
    lines = ["fileid,path,num_samples"] + [f"{k},{k}.wav,{n}" for k, n in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    m = read_manifest(path)
    assert m.fileids.tolist() == list(rows)
    assert m.num_samples.tolist() == list(rows.values())
    assert m.paths.tolist() == [f"{k}.wav" for k in rows]


# ------------------------------------------------------------------------------------ item files


@FUZZ
@given(body=any_bytes)
def test_item_file_reader_never_crashes(work, body):
    from spidrkit.eval.abx.items import ITEM_HEADER, read_item_file

    path = work / "x.item"
    path.write_bytes((" ".join(ITEM_HEADER) + "\n").encode() + body)
    try:
        items = read_item_file(path)
    except DataError as exc:
        _one_line(exc)
        return
    assert (items.onset >= 0).all() and (items.offset >= items.onset).all()
    keys = list(zip(items.fileid, items.onset.tolist(), items.offset.tolist()))
    assert len(set(keys)) == len(keys)


# ------------------------------------------------------------------------------------ JSONL

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**13), 10**13)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
unit_row = st.fixed_dictionaries(
    {
        "audio": st.one_of(st.text(max_size=6), json_value),
        "units": st.one_of(json_value, st.lists(json_value, max_size=6)),
    },
    optional={"durations": st.one_of(json_value, st.lists(st.integers(-2, 5), max_size=6))},
)


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@FUZZ
@given(rows=st.lists(st.one_of(unit_row, json_value), max_size=5), junk=st.binary(max_size=40))
def test_units_readers_never_crash(work, rows, junk):
    from spidrkit.eval.abx.items import read_units_jsonl
    from spidrkit.lm.data import read_units_jsonl as lm_read
    from spidrkit.units.files import read_units
    from spidrkit.utils.textfiles import MAX_UNIT_ID

    path = work / "u.jsonl"
    for data in (_jsonl(rows), _jsonl(rows) + junk):
        path.write_bytes(data)
        for reader in (read_units_jsonl, read_units, lm_read):
            try:
                out = reader(path)
            except DataError as exc:
                _one_line(exc)
                continue
            values = (
                [int(u) for t in out.values() for u in t.tolist()]
                if isinstance(out, dict)
                else [u for r in out for u in r.units]
            )
            assert all(0 <= u <= MAX_UNIT_ID for u in values)


@FUZZ
@given(
    rows=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"name": st.one_of(st.text(max_size=5), json_value), "phones": json_value}
            ),
            json_value,
        ),
        max_size=5,
    )
)
def test_label_reader_never_crashes(work, rows):
    from spidrkit.eval.unit_quality import read_phone_labels

    path = work / "l.jsonl"
    path.write_bytes(_jsonl(rows))
    try:
        labels = read_phone_labels(path)
    except DataError as exc:
        _one_line(exc)
        return
    assert all(isinstance(p, str) for ps in labels.values() for p in ps)


# ------------------------------------------------------------------------------------ gold CSV


@FUZZ
@given(
    header=st.sampled_from(
        [
            "filename,id,correct\n",
            "filename,id,voice,correct\n",
            "filename,voice,type,subtype,id,correct\n",
            "a,b\n",
        ]
    ),
    body=any_bytes,
)
def test_gold_csv_reader_never_crashes(work, header, body):
    from spidrkit.lm.zerospeech import _read_gold

    path = work / "gold.csv"
    path.write_bytes(header.encode() + body)
    try:
        _, items = _read_gold(path, None)
    except DataError as exc:
        _one_line(exc)
        return
    names = [i.filename for i in items]
    assert len(names) == len(set(names)) and all(i.id for i in items)


# ------------------------------------------------------------------------------------ TOML configs

toml_scalar = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet=string.ascii_letters, max_size=6),
)
_KEYS = {
    "run": ["max_steps", "seed", "precision", "keep_last", "resume", "log_interval", "bogus"],
    "optimizer": ["lr", "eps", "clip_norm", "betas", "weight_decay", "warmup_steps"],
    "data": ["min_sample_size", "max_sample_size", "max_batch_samples", "num_workers"],
    "masking": ["mask_prob", "mask_length", "min_masks"],
    "model": ["encoder_embed_dim", "codebook_size", "ema_start_decay"],
}
sections = st.fixed_dictionaries(
    {
        sec: st.dictionaries(st.sampled_from(keys), toml_scalar, max_size=3)
        for sec, keys in _KEYS.items()
    }
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


@FUZZ
@given(data=sections, junk=st.sampled_from(["", "[run\n", "x = = 1\n", "\x00"]))
def test_train_config_loader_never_crashes(work, data, junk):
    import math

    from spidrkit.config import to_dict
    from spidrkit.train.config import load_train_config

    text = "".join(
        f"[{sec}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in kv.items())
        for sec, kv in data.items()
    )
    path = work / "c.toml"
    path.write_text(text + junk)
    try:
        cfg = load_train_config(path)
    except ConfigError as exc:
        _one_line(exc)
        return

    def floats(d):
        for v in d.values() if isinstance(d, dict) else d:
            if isinstance(v, (dict, list)):
                yield from floats(v)
            elif isinstance(v, float):
                yield v

    assert all(math.isfinite(v) for v in floats(to_dict(cfg)))
    assert cfg.run.max_steps >= 1 and cfg.optimizer.lr > 0
