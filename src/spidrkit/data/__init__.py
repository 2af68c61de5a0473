"""Data for pretraining: manifests, length-bucketed distributed batching, span masking.

```python
from spidrkit.data import (scan_directory, write_manifest, read_manifest, validate_manifest,
                           DataConfig, MaskingConfig, make_dataloader)
write_manifest(scan_directory("wavs/"), "train.csv")        # or: spidrkit manifest wavs/ -o train.csv
validate_manifest("train.csv").raise_if_problems()          # every bad file, at once
loader = make_dataloader("train.csv", DataConfig(), MaskingConfig(), seed=0, epoch=0)
batch = next(iter(loader))   # Batch(waveforms [B, S], attention_mask, mask_indices [B, M], ...)
```

Modules: ``manifest`` (columnar Manifest, CSV/TSV read and write), ``scan`` (folders, tar archives),
``validate``, ``config`` (DataConfig, MaskingConfig), ``sampler`` (BucketBatchSampler), ``masking``
(compute_mask_indices), ``frames`` (conv frame count), ``dataset`` (AudioDataset, Batch, collate,
make_dataloader). Audio decoding needs the ``audio`` extra.
"""

from spidrkit.data.columns import StringColumn
from spidrkit.data.config import DataConfig, MaskingConfig
from spidrkit.data.dataset import (
    AudioDataset,
    AudioItem,
    Batch,
    collate,
    load_manifests,
    make_dataloader,
)
from spidrkit.data.frames import conv_num_frames
from spidrkit.data.manifest import Manifest, read_manifest, write_manifest
from spidrkit.data.masking import compute_mask_indices, indices_to_mask, mask_rng
from spidrkit.data.sampler import BatchKey, BucketBatchSampler
from spidrkit.data.scan import scan_directory, scan_tar
from spidrkit.data.validate import Problem, ValidationReport, validate_manifest

__all__ = [
    "AudioDataset",
    "AudioItem",
    "Batch",
    "BatchKey",
    "BucketBatchSampler",
    "DataConfig",
    "Manifest",
    "MaskingConfig",
    "Problem",
    "StringColumn",
    "ValidationReport",
    "collate",
    "compute_mask_indices",
    "conv_num_frames",
    "indices_to_mask",
    "load_manifests",
    "make_dataloader",
    "mask_rng",
    "read_manifest",
    "scan_directory",
    "scan_tar",
    "validate_manifest",
    "write_manifest",
]
