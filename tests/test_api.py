"""High-level encoder API: any length/rate, lists and padded batches agree with single items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spidrkit
from spidrkit.errors import SpidrkitError
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import save_model
from spidrkit.models.config import tiny_overrides


def wavs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 0.1 for n in lengths]


@pytest.mark.parametrize("mode", ["layer_norm", "group_norm"])
def test_padded_batch_equals_single_items(mode, tmp_path) -> None:
    from spidrkit.models import DinoSRConfig

    torch.manual_seed(0)
    model = build_model("dinosr", DinoSRConfig(**{**tiny_overrides(), "extractor_mode": mode}))
    save_model(model, tmp_path / "m.pt")
    enc = spidrkit.load(tmp_path / "m.pt")
    items = wavs([16000, 7000, 12345, 400])
    batch = enc.features(items, layers=[2, 4])
    for item, got in zip(items, batch):
        alone = enc.features(item, layers=[2, 4])[0]
        assert got.keys() == {2, 4}
        for layer in (2, 4):
            assert got[layer].shape == (enc.frames(item.numel()), 64)
            torch.testing.assert_close(got[layer], alone[layer], atol=1e-4, rtol=1e-4)
    padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
    from_padded = enc.features(padded, lengths=[len(w) for w in items], layers=[4])
    for a, b in zip(batch, from_padded):
        torch.testing.assert_close(a[4], b[4], atol=1e-4, rtol=1e-4)


def test_layers_match_model_and_resampling() -> None:
    enc = spidrkit.load("spidr_tiny")
    wav = wavs([16000])[0]
    feats = enc.features(wav, layers=[1, 3])[0]
    ref = enc.model.get_intermediate_outputs(
        torch.nn.functional.layer_norm(wav, wav.shape, eps=1e-5)[None]
    )
    torch.testing.assert_close(feats[3], ref[2][0])
    at_8k = enc.features(np.asarray(wav[::2]), sample_rate=8000, layers=[1])[0][1]
    assert at_8k.shape[0] == 49  # resampled to 16 kHz first
    units = enc.codebook_units([wav, wav[:8000]])
    assert set(units[0]) == {2, 3, 4} and units[1][4].shape == (24,)
    assert units[0][4].dtype == torch.long and int(units[0][4].max()) < 16


def test_bad_inputs() -> None:
    enc = spidrkit.load("spidr_tiny")
    with pytest.raises(SpidrkitError, match="too short"):
        enc.features(torch.zeros(100))
    with pytest.raises(SpidrkitError, match="layers"):
        enc.features(torch.zeros(16000), layers=[9])
    with pytest.raises(SpidrkitError, match="no such checkpoint"):
        spidrkit.load("does/not/exist.pt")


def test_preset_table_is_consistent() -> None:
    for name, preset in PRESETS.items():
        assert not preset.config.validate(), name
        assert preset.url is None or preset.url.startswith("https://")
