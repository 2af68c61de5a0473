"""`spidrkit abx`: features folder, units JSONL, checkpoint layers; JSON/CSV outputs; errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spidrkit.cli.main import main
from spidrkit.eval.abx import read_results_json

HEADER = "#file onset offset #phone prev-phone next-phone speaker\n"


def write_task(tmp_path, n_files=4):
    """Two speakers, phones a/b in two contexts; 'a' frames near +e1, 'b' frames near -e1."""
    gen = torch.Generator().manual_seed(0)
    feats = tmp_path / "feats"
    (feats / "sub").mkdir(parents=True)
    lines = [HEADER]
    for f in range(n_files):
        x = 0.3 * torch.randn(40, 4, generator=gen)
        for k, (ph, ctx) in enumerate([("a", "x y"), ("b", "x y"), ("a", "y x"), ("b", "y x")]):
            lo, hi = 8 * k, 8 * k + 6
            x[lo:hi, 0] += 1.0 if ph == "a" else -1.0
            lines.append(f"sub/u{f} {lo * 0.02:.2f} {hi * 0.02:.2f} {ph} {ctx} s{f % 2}\n")
        if f % 2:
            np.save(feats / "sub" / f"u{f}.npy", x.numpy())
        else:
            torch.save(x, feats / "sub" / f"u{f}.pt")
    (tmp_path / "t.item").write_text("".join(lines))
    return tmp_path / "t.item", feats


def test_cli_features_folder_json_csv(tmp_path, capsys):
    item, feats = write_task(tmp_path)
    out_json, out_csv = tmp_path / "r.json", tmp_path / "c.csv"
    args = ["abx", str(item), str(feats), "--speaker", "within,across", "--context", "within,any"]
    args += ["--json", str(out_json), "--csv", str(out_csv), "--json-cells", "--no-progress"]
    assert main(args + ["--label", "toy", "--layer", "3"]) == 0
    table = capsys.readouterr().out
    assert "ABX %" in table and "across" in table
    results = read_results_json(out_json)
    assert [(r.config.speaker, r.config.context) for r in results] == [
        ("within", "within"),
        ("within", "any"),
        ("across", "within"),
        ("across", "any"),
    ]
    assert all(r.label == "toy" and r.layer == 3 for r in results)
    assert all(0 <= r.error < 0.2 for r in results)  # well separated classes
    assert len(results[0].cells) == results[0].n_cells > 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == sum(r.n_cells for r in results)
    assert set(rows[0]) >= {"phone_a", "phone_b", "context", "speaker", "n_triplets", "error"}


def test_cli_units_jsonl_defaults_to_identical(tmp_path, capsys):
    item, _ = write_task(tmp_path)
    with (tmp_path / "u.jsonl").open("w") as f:
        for k in range(4):
            units = [0, 9, 1, 9, 0, 9, 1, 9, 9]  # a -> 0, b -> 1
            durs = [6, 2, 6, 2, 6, 2, 6, 2, 8]
            f.write(json.dumps({"audio": f"/x/sub/u{k}.wav", "units": units, "durations": durs}))
            f.write("\n")
    out = tmp_path / "r.json"
    assert main(["abx", str(item), str(tmp_path / "u.jsonl"), "--json", str(out)]) == 0
    (res,) = read_results_json(out)
    assert res.config.distance == "identical"
    assert res.error == 0.0
    capsys.readouterr()
    assert main(["abx", str(item), str(tmp_path / "u.jsonl"), "--json", "-"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)["results"]  # the JSON only, no table
    (written,) = json.loads(out.read_text())["results"]
    assert {**printed, "seconds": 0} == {**written, "seconds": 0}  # all but the run time


def test_cli_errors_are_one_line(tmp_path, capsys):
    item, feats = write_task(tmp_path)
    bad = tmp_path / "bad.item"
    bad.write_text(HEADER + "sub/u0 0.0 x a x y s0\n")
    assert main(["abx", str(bad), str(feats)]) == 2
    assert "bad.item:2" in capsys.readouterr().err
    assert main(["abx", str(item), str(tmp_path / "nofeats")]) == 2
    assert "features folder not found" in capsys.readouterr().err
    assert main(["abx", str(item)]) == 2
    assert "--model" in capsys.readouterr().err


def test_cli_as_a_process_writes_everything_and_exits_with_its_code(tmp_path):
    """As the program, `spidrkit abx` ends without the interpreter's teardown: its output must
    still be complete, and its exit code the command's; it never loads the encoder modules."""
    item, feats = write_task(tmp_path)
    out_json, out_csv = tmp_path / "r.json", tmp_path / "c.csv"
    code = (
        "import sys; from spidrkit.cli.main import main; sys.argv[0] = 'spidrkit'; rc = main(); "
        "print('not reached'); sys.exit(rc)"
    )
    args = [sys.executable, "-c", code, "abx", str(item), str(feats), "--max-size-group", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    probe = "; import sys; print(sorted(m for m in sys.modules if m.startswith('spidrkit.units')))"
    out = subprocess.run(
        [*args, "--json", str(out_json), "--csv", str(out_csv), "--no-progress"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "within  within" in out.stdout and out.stdout.rstrip().endswith(f"wrote {out_csv}")
    assert "not reached" not in out.stdout
    assert read_results_json(out_json)[0].n_cells > 0 and len(out_csv.read_text().splitlines()) > 1
    bad = subprocess.run([*args[:4], str(item), str(tmp_path / "nofeats")], capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and "features folder not found" in bad.stderr
    loaded = subprocess.run([sys.executable, "-c", "import spidrkit.eval.abx" + probe],
                            capture_output=True, text=True, env=env, check=True)  # fmt: skip
    assert loaded.stdout.strip() == "['spidrkit.units', 'spidrkit.units.files']"


def test_named_command_builds_one_subparser():
    from spidrkit.cli.main import build_parser, named_command

    assert named_command(["-v", "abx", "x.item"]) == "abx"
    assert named_command(["--help", "abx"]) is None and named_command(["nope"]) is None
    assert named_command([]) is None
    choices = build_parser("abx")._subparsers._group_actions[0].choices  # noqa: SLF001
    assert list(choices) == ["abx"]


def test_cli_help_has_example(capsys):
    with pytest.raises(SystemExit):
        main(["abx", "--help"])
    assert "spidrkit abx dev-clean.item" in capsys.readouterr().out


def test_cli_model_layers(tmp_path, capsys):
    sf = pytest.importorskip("soundfile")
    item, _ = write_task(tmp_path)
    audio = tmp_path / "audio" / "sub"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in range(4):
        sf.write(audio / f"u{f}.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    out = tmp_path / "layers.json"
    args = ["abx", str(item), "--model", "spidr_tiny", "--layers", "1,2", "--no-progress"]
    assert main(args + ["--audio", str(tmp_path / "audio"), "--json", str(out)]) == 0
    results = read_results_json(out)
    assert [r.layer for r in results] == [1, 2]
    assert all(r.label == "spidr_tiny" and 0 <= r.error <= 1 for r in results)
