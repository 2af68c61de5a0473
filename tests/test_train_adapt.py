"""Adaptation: a run started from a pretrained model (``--init``), its options, exact resume,
config/checkpoint mismatches, presets from a local server, fairseq DinoSR, model folders."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest
import torch

from spidrkit.errors import CheckpointError, ConfigError
from spidrkit.train import adapt
from spidrkit.train import checkpoint as ckpt
from spidrkit.train.config import load_train_config
from spidrkit.train.faults import ENV as FAULT_ENV
from spidrkit.train.trainer import Trainer, pretrain
from test_train_loop import _assert_same, _run_cli
from train_helpers import REPO, TINY_TOML, make_corpus, tiny_overrides

ADAPT_TOML = REPO / "src" / "spidrkit" / "configs" / "adapt.toml"
ADAPT_MFCC_TOML = REPO / "src" / "spidrkit" / "configs" / "adapt_mfcc.toml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def source(corpus, tmp_path_factory):
    """A 6-step tiny SpidR with balanced cosine codebooks and an MFCC warm-up (the small recipe's
    training controls): the checkpoint every test adapts."""
    out = tmp_path_factory.mktemp("source")
    cfg = load_train_config(
        TINY_TOML,
        tiny_overrides(
            corpus,
            out,
            **{
                "model.codebook_distance": '"cosine"',
                "model.codebook_balance": "0.05",
                "model.warmup_targets": '"mfcc"',
                "model.warmup_target_steps": "3",
            },
        ),
    )
    return pretrain(cfg).checkpoint


def _adapt_sets(corpus, out, **extra):
    """The tiny test sizes for the adapt recipe: data and run settings only (no [model] sizes)."""
    sets = [s for s in tiny_overrides(corpus, out) if not s.startswith("model.")]
    return sets + [f"{k}={v}" for k, v in extra.items()]


def _adapt_cfg(corpus, out, init, **extra):
    extra = {"run.init_codebooks": '"checkpoint"', **extra}
    return load_train_config(
        ADAPT_TOML, _adapt_sets(corpus, out, **{"run.init_checkpoint": f'"{init}"', **extra})
    )


def _model_state(path):
    return ckpt.load_checkpoint(path)["model"]


# ------------------------------------------------------------------------------ config + weights


def test_architecture_and_model_type_come_from_the_checkpoint(corpus, source, tmp_path):
    cfg = _adapt_cfg(corpus, tmp_path / "a", source)
    assert cfg.run.model_type == "spidr" and cfg.model.encoder_embed_dim == 64
    assert cfg.model.codebook_size == 16 and cfg.model.codebook_distance == "cosine"
    # the recipe's training controls win over the checkpoint's
    assert cfg.model.warmup_targets == "none" and cfg.model.ema_start_decay == 0.99
    assert cfg.optimizer.scheduler == "cosine" and cfg.run.max_steps == 6


def test_init_loads_every_weight_with_a_fresh_optimizer_and_schedule(corpus, source, tmp_path):
    cfg = _adapt_cfg(corpus, tmp_path / "a", source)
    trainer = Trainer(cfg)
    src = _model_state(source)
    own = trainer.model.state_dict()
    assert not any(k.startswith("warmup_codebook.") for k in own)  # recipe: no MFCC warm-up
    for key, value in own.items():
        if key == "current_step":
            assert int(value) == 0
        else:
            assert torch.equal(value, src[key]), key
    assert any(k.startswith("teacher.") for k in own) and "codebooks.0.bias" in own
    assert trainer.step == 0 and not trainer.optimizer.state
    assert trainer.scheduler.last_epoch == 0
    assert trainer.scheduler.get_last_lr()[0] < cfg.optimizer.lr  # warm-up from the start
    record = trainer.init_record
    assert record is not None and record["source"] == str(source)
    assert record["sha256"] == hashlib.sha256(Path(source).read_bytes()).hexdigest()


def test_config_that_does_not_fit_is_one_clear_line(corpus, source, tmp_path, capsys):
    from spidrkit.cli.main import main

    args = ["train", str(TINY_TOML), "--init", str(source)]
    for s in tiny_overrides(corpus, tmp_path / "x", **{"model.encoder_embed_dim": 32}):
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "does not fit this checkpoint" in err and "encoder_embed_dim = 32" in err
    assert "64 in the checkpoint" in err and not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="a spidr checkpoint, but the config trains"):
        _adapt_cfg(corpus, tmp_path / "y", source, **{"run.model_type": '"dinosr"'})
    # a training control may change; sizes given equal to the checkpoint's are fine
    cfg = _adapt_cfg(
        corpus, tmp_path / "z", source, **{"model.encoder_dropout": 0.2, "model.codebook_size": 16}
    )
    assert cfg.model.encoder_dropout == 0.2


def test_missing_checkpoint_and_weightless_preset_are_clear(corpus, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file, model folder or preset"):
        _adapt_cfg(corpus, tmp_path / "a", tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="has no published weights"):
        _adapt_cfg(corpus, tmp_path / "a", "spidr_tiny")
    with pytest.raises(ConfigError, match=r"init_checkpoint: empty: .* --init CKPT_OR_PRESET"):
        load_train_config(ADAPT_TOML, _adapt_sets(corpus, tmp_path / "b"))
    with pytest.raises(ConfigError, match=r"init_codebooks: 'kmeans' needs run.init_checkpoint"):
        load_train_config(TINY_TOML, ["run.init_codebooks=kmeans"])


def test_teacher_reset_to_the_student(corpus, source, tmp_path):
    cfg = _adapt_cfg(corpus, tmp_path / "a", source, **{"run.init_teacher": '"student"'})
    model = Trainer(cfg).model
    student = model.student.state_dict()
    teacher = model.teacher.state_dict()
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[k], teacher[k]) for k in student)
    src = _model_state(source)
    assert not torch.equal(
        src["teacher.layers.0.attention.qkv.weight"], src["student.layers.0.attention.qkv.weight"]
    )


def test_freeze_extractor_and_first_layers(corpus, source, tmp_path):
    cfg = _adapt_cfg(
        corpus,
        tmp_path / "a",
        source,
        **{"run.freeze_extractor": "true", "run.freeze_layers": 2, "run.max_steps": 3},
    )
    trainer = Trainer(cfg)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, p in trainer.model.named_parameters():
        frozen = name.startswith(
            ("feature_extractor.", "feature_projection.", "student.layers.0.", "student.layers.1.")
        )
        if frozen:
            assert id(p) not in in_optimizer and not p.requires_grad, name
    result = pretrain(cfg)
    before, after = _model_state(source), _model_state(result.checkpoint)
    for key in before:
        if key.startswith(("feature_extractor.", "feature_projection.", "student.layers.0.")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(
        before["student.layers.2.attention.qkv.weight"],
        after["student.layers.2.attention.qkv.weight"],
    )
    with pytest.raises(ConfigError, match="freeze_layers: 5 is more than the model's 4"):
        _adapt_cfg(corpus, tmp_path / "b", source, **{"run.freeze_layers": 5})


def test_kmeans_codebooks_fit_the_new_data(corpus, source, tmp_path):
    cfg = _adapt_cfg(
        corpus,
        tmp_path / "a",
        source,
        **{"run.init_codebooks": '"kmeans"', "run.init_kmeans_seconds": 4},
    )
    kept = Trainer(_adapt_cfg(corpus, tmp_path / "b", source)).model
    model = Trainer(cfg).model
    targets = adapt.teacher_targets(model, adapt.sample_batches(cfg), 10_000)

    def spread(m):  # mean cosine distance of each target to its codeword, codewords in use
        out = []
        for cb, x in zip(m.codebooks, targets):
            x = torch.nn.functional.normalize(x, dim=-1)
            c = torch.nn.functional.normalize(cb.centroids(), dim=-1)
            sim = x @ c.t()
            out.append((float(1 - sim.max(-1).values.mean()), len(set(sim.argmax(-1).tolist()))))
        return out

    for (d_new, used_new), (d_old, _) in zip(spread(model), spread(kept)):
        assert d_new < d_old and used_new >= 8
    for cb in model.codebooks:
        assert torch.equal(cb.counts, torch.ones_like(cb.counts)) and not cb.bias.any()


# ------------------------------------------------------------------------------------- resume


def test_adaptation_resumes_bitwise_after_a_kill(corpus, source, tmp_path):
    """The shipped recipe through the CLI (+ k-means codebooks, a frozen extractor): killed after
    step 3, resumed to step 6, equal bit for bit to an uninterrupted run; both record the start."""
    extra = {
        "run.init_codebooks": "kmeans",
        "run.init_kmeans_seconds": 4,
        "run.freeze_extractor": "true",
    }

    def args(out):
        a = ["train", "adapt", "--init", str(source)]
        for s in _adapt_sets(corpus, out, **extra):
            a += ["--set", s]
        return a

    _run_cli(args(tmp_path / "straight"))
    straight = ckpt.find_latest_checkpoint(tmp_path / "straight" / "checkpoints")
    proc = _run_cli(args(tmp_path / "killed"), {FAULT_ENV: "step:3"}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    _run_cli(args(tmp_path / "killed"))
    final = ckpt.find_latest_checkpoint(tmp_path / "killed" / "checkpoints")
    assert final.name == straight.name == "checkpoint_00000006.pt"
    a, b = ckpt.load_checkpoint(straight), ckpt.load_checkpoint(final)
    _assert_same(a["model"], b["model"])
    assert a["sampler"] == b["sampler"] and a["scheduler"] == b["scheduler"]
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    assert a["init"]["sha256"] == b["init"]["sha256"] == digest
    assert b["init"]["source"] == str(source) and b["init"]["format"] == "spidrkit"


# ------------------------------------------------------------------------ presets, DinoSR, folders


@pytest.fixture
def server(local_http):
    return local_http


def test_init_from_a_preset_downloads_once_from_a_local_server(
    corpus, source, tmp_path, server, monkeypatch
):
    from spidrkit.models import presets
    from spidrkit.models.checkpoint import load_model, save_model

    url, root, hits = server
    model = load_model(source)
    save_model(model, root / "local_tiny.pt", write_config_json=False)
    digest = hashlib.sha256((root / "local_tiny.pt").read_bytes()).hexdigest()
    # an official-layout file: the preset's table gives its type and config
    monkeypatch.setenv("SPIDRKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(
        presets.PRESETS,
        "local_tiny",
        presets.Preset("spidr", model.config, f"{url}/local_tiny.pt", sha256=digest),
    )
    trainer = Trainer(_adapt_cfg(corpus, tmp_path / "a", "local_tiny"))
    assert (tmp_path / "cache" / "local_tiny.pt").is_file()
    assert trainer.init_record["source"] == "local_tiny" and len(hits) == 1
    Trainer(_adapt_cfg(corpus, tmp_path / "b", "local_tiny"))  # from the cache
    assert len(hits) == 1
    assert trainer.init_record["sha256"] == digest
    own = trainer.model.state_dict()
    assert torch.equal(
        own["student.layers.3.feed_forward.output_dense.weight"],
        model.state_dict()["student.layers.3.feed_forward.output_dense.weight"],
    )


def test_init_from_an_original_fairseq_dinosr(corpus, tmp_path):
    """The fixture's fairseq DinoSR keys at the tiny size (as test_models_checkpoint writes them)."""
    import argparse

    from spidrkit.models import DinoSRConfig
    from spidrkit.models.checkpoint import load_model
    from spidrkit.models.config import tiny_overrides as model_tiny
    from test_models_checkpoint import nest_ema, tiny_fairseq_dinosr_weights

    flat = tiny_fairseq_dinosr_weights(seed=3)
    torch.save(
        {"model": nest_ema(flat), "args": argparse.Namespace(arch="dinosr")},
        tmp_path / "dinosr.ckpt",
    )
    overrides = {
        "run.init_checkpoint": f'"{tmp_path / "dinosr.ckpt"}"',
        "run.model_type": '"dinosr"',  # an official/fairseq file does not say
    }
    cfg = load_train_config(ADAPT_TOML, _adapt_sets(corpus, tmp_path / "a", **overrides))
    assert cfg.run.model_type == "dinosr" and cfg.model.encoder_qkv_bias
    assert cfg.model.encoder_embed_dim == 64 and cfg.model.num_codebooks == 3
    trainer = Trainer(cfg)
    assert trainer.init_record["format"] == "fairseq"
    ref = load_model(
        tmp_path / "dinosr.ckpt",
        model_type="dinosr",
        config=DinoSRConfig(**{**model_tiny(), "encoder_qkv_bias": True}),
    ).state_dict()
    for key, value in trainer.model.state_dict().items():
        if key != "current_step":
            assert torch.equal(value, ref[key]), key
    assert pretrain(cfg).step == 6


def test_model_folder_round_trip_gives_the_same_features(source, tmp_path):
    import json

    import spidrkit
    from spidrkit.cli.main import main

    assert main(["convert", str(source), str(tmp_path / "my_model")]) == 0
    folder = tmp_path / "my_model"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "model.safetensors", "model.safetensors.sha256"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "spidr" and config["encoder_embed_dim"] == 64
    assert config["codebook_distance"] == "cosine"
    torch.manual_seed(0)
    wav = torch.randn(9000)
    a = spidrkit.load(str(source)).features(wav)[0]
    b = spidrkit.load(folder).features(wav)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the folder alone describes the model: config.json wins, safetensors metadata is not needed
    from safetensors.torch import load_file, save_file

    save_file(load_file(folder / "model.safetensors"), folder / "model.safetensors")
    (folder / "model.safetensors.sha256").unlink()  # as another tool writes it
    c = spidrkit.load(folder).features(wav)[0]
    assert all(torch.equal(a[k], c[k]) for k in a)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="model folder without config.json"):
        spidrkit.load(folder)
    with pytest.raises(CheckpointError, match="not a model folder: no model.safetensors"):
        spidrkit.load(tmp_path)
    assert main(["convert", str(source), str(tmp_path / "x.bin")]) == 2


def test_adapt_recipe_is_shipped(capsys):
    from spidrkit.cli.main import main

    assert main(["config", "list"]) == 0
    assert "adapt" in capsys.readouterr().out
    assert main(["config", "show", "adapt"]) == 0
    shown = capsys.readouterr().out
    assert "init_codebooks" in shown and "encoder_embed_dim" not in shown
    assert main(["config", "show", "adapt_mfcc"]) == 0
    shown = capsys.readouterr().out
    assert 'warmup_targets = "mfcc"' in shown and "encoder_embed_dim" not in shown


def test_adapt_mfcc_continues_the_mfcc_targets_of_the_source(corpus, source, tmp_path):
    sets = _adapt_sets(corpus, tmp_path / "m", **{"run.init_checkpoint": f'"{source}"'})
    cfg = load_train_config(ADAPT_MFCC_TOML, sets)
    assert cfg.model.warmup_targets == "mfcc" and cfg.model.warmup_unmasked_weight == 1.0
    assert cfg.model.warmup_target_steps > cfg.run.max_steps  # MFCC codes for the whole run
    assert cfg.optimizer.lr == load_train_config(ADAPT_TOML, sets).optimizer.lr
    trainer = Trainer(cfg)
    src, own = _model_state(source), trainer.model.state_dict()
    mfcc_keys = [k for k in own if k.startswith("warmup_codebook.")]
    assert mfcc_keys and all(torch.equal(own[k], src[k]) for k in mfcc_keys)
    result = pretrain(cfg)
    assert result.step == cfg.run.max_steps
    state = ckpt.load_checkpoint(result.checkpoint)
    assert state["init"]["source"] == str(source)
    key = "student.layers.0.feed_forward.intermediate_dense.weight"
    assert not torch.equal(state["model"][key], src[key])  # it trained


def test_lloyd_kmeans_finds_separated_clusters_deterministically():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 5, generator=gen) * 10
    x = centers.repeat_interleave(50, 0) + 0.1 * torch.randn(400, 5, generator=gen)
    a, inertia = adapt.lloyd_kmeans(x, 8, seed=3)
    b, _ = adapt.lloyd_kmeans(x, 8, seed=3)
    assert torch.equal(a, b) and inertia < 0.1
    found = torch.cdist(centers, a).min(1).values
    assert bool((found < 0.2).all())


@pytest.mark.slow
def test_adapt_recipes_run_from_a_wheel(corpus, source, tmp_path):
    """The recipes are package data: `spidrkit train adapt_mfcc --init CKPT` from a built wheel,
    run outside the repository, with its step budget in run.max_steps."""
    import subprocess
    import sys
    import zipfile

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + [str(REPO), "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    site = tmp_path / "site"
    zipfile.ZipFile(next(wheels.glob("spidrkit-*.whl"))).extractall(site)
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run(
        [sys.executable, "-c", "import spidrkit, spidrkit.configs as c; print(c.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site)), where  # the wheel's package, not the checkout
    out = tmp_path / "adapted"
    sets = _adapt_sets(corpus, out, **{"run.max_steps": "2"})
    args = ["train", "adapt_mfcc", "--init", str(source), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(
        [sys.executable, "-m", "spidrkit.cli.main", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = ckpt.load_checkpoint(ckpt.find_latest_checkpoint(out / "checkpoints"))
    assert state["step"] == 2 and state["init"]["source"] == str(source)
