"""Unit quality: hand-computed cases, length tolerance, files and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spidrkit.cli.main import main
from spidrkit.errors import DataError
from spidrkit.eval.unit_quality import UnitQuality, compute_unit_quality


def test_perfect_units():
    # 10 ms labels a a b b; 20 ms units 0 1 -> 0 0 1 1: one unit per phone
    q = compute_unit_quality({"u": ["a", "a", "b", "b"]}, {"u": [0, 1]})
    assert q.pnmi == pytest.approx(1.0)
    assert q.phone_purity == pytest.approx(1.0) and q.cluster_purity == pytest.approx(1.0)
    assert q.perplexity == pytest.approx(2.0) and q.active_codewords == 2
    # 2 runs in 2 * 20 ms = 50 units/s; V = 2 -> 1 bit per unit
    assert q.units_per_second == pytest.approx(50.0) and q.bitrate == pytest.approx(50.0)
    assert q.phone_given_unit().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_hand_computed_mixed_case():
    # labels a a a a b b b b; units 0 0 0 1 -> frames 0 x6, 1 x2
    # p(a,0)=4/8, p(b,0)=2/8, p(b,1)=2/8; H(y)=1 bit; H(y|z)=0.75*h(2/3)
    q = compute_unit_quality({"u": list("aaaabbbb")}, {"u": [0, 0, 0, 1]}, vocab_size=4)
    h = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)  # 0.9183 bits
    assert q.pnmi == pytest.approx(1.0 - 0.75 * h)  # 0.3113
    assert q.phone_purity == pytest.approx(4 / 8 + 2 / 8)
    assert q.cluster_purity == pytest.approx(4 / 8 + 2 / 8)
    hz = -0.75 * math.log2(0.75) - 0.25 * math.log2(0.25)  # 0.8113 bits
    assert q.perplexity == pytest.approx(2**hz)  # 1.7548
    assert q.active_codewords == 2 and q.vocab_size == 4
    # 2 runs (0 0 0 | 1) over 4 * 20 ms = 25 units/s, log2(4) = 2 bits -> 50 bits/s
    assert q.units_per_second == pytest.approx(25.0) and q.bitrate == pytest.approx(50.0)
    assert q.counts.tolist() == [[4, 0], [2, 2]]
    assert q.phone_given_unit()[:, 0].tolist() == pytest.approx([2 / 3, 1 / 3])


def test_independent_units_have_zero_pnmi():
    # every unit sees a and b equally often: I(y; z) = 0
    q = compute_unit_quality({"u": list("abababab")}, {"u": [0, 1, 2, 3]})
    # repeated units: 0 0 1 1 2 2 3 3 against a b a b ...: each unit sees one a and one b
    assert q.pnmi == pytest.approx(0.0, abs=1e-12)
    assert q.phone_purity == pytest.approx(0.5) and q.perplexity == pytest.approx(4.0)


def test_length_tolerance_and_error_names_utterance():
    q = compute_unit_quality({"u": list("aabbb")}, {"u": [0, 1]})  # 5 labels vs 4: cut to 4
    assert q.n_frames == 4 and q.pnmi == pytest.approx(1.0)
    q = compute_unit_quality({"u": list("aabbbb")}, {"u": [0, 1]})  # 2 frames: tolerated
    assert q.n_frames == 4
    with pytest.raises(DataError, match="'utt7'.*7 label frames"):
        compute_unit_quality({"utt7": list("aabbbbb")}, {"utt7": [0, 1]})


def test_files_cli_and_json_roundtrip(tmp_path, capsys):
    labels = tmp_path / "labels.jsonl"
    units = tmp_path / "units.jsonl"
    labels.write_text(
        json.dumps({"name": "spk/u1", "phones": list("aaaabbbb")})
        + "\n"
        + json.dumps({"name": "spk/u2", "phones": list("bbbbaaaa")})
        + "\n"
    )
    units.write_text(
        json.dumps({"audio": "/corpus/spk/u1.flac", "units": [5, 7], "durations": [2, 2]})
        + "\n"
        + json.dumps({"audio": "/corpus/spk/u2.flac", "units": [7, 5], "durations": [2, 2]})
        + "\n"
    )
    out = tmp_path / "q.json"
    assert main(["unit-quality", str(labels), str(units), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pnmi" in text and "1.0000" in text
    q = UnitQuality.read_json(out)
    assert q.pnmi == pytest.approx(1.0) and q.units == [5, 7] and q.vocab_size == 8
    assert np.array_equal(q.counts, [[8, 0], [0, 8]])
    assert main(["unit-quality", str(labels), str(units), "--json", "-"]) == 0
    assert UnitQuality.from_dict(json.loads(capsys.readouterr().out)).pnmi == pytest.approx(1.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"name": "x"}\n')
    assert main(["unit-quality", str(bad), str(units)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
