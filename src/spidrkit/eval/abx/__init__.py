"""ABX phone discriminability (docs/evaluation.md, "ABX"): items, distances, DTW, cells, scores.

>>> from spidrkit.eval.abx import ABXConfig, compute_abx
>>> result = compute_abx("dev.item", "feats/", ABXConfig(speaker="within"))  # doctest: +SKIP
>>> print(f"{100 * result.error:.2f} %")  # doctest: +SKIP
"""

from spidrkit.eval.abx.api import compute_abx, compute_abx_modes, units_as_features
from spidrkit.eval.abx.distances import DISTANCES, pair_distances, prepare_frames
from spidrkit.eval.abx.dtw import dtw_normalised
from spidrkit.eval.abx.items import (
    FeatureFolder,
    Items,
    item_frame_range,
    read_item_file,
    read_units_jsonl,
)
from spidrkit.eval.abx.result import (
    ABXCell,
    ABXConfig,
    ABXResult,
    format_table,
    read_results_json,
    write_cells_csv,
    write_results_json,
)

__all__ = [
    "ABXCell",
    "ABXConfig",
    "ABXResult",
    "DISTANCES",
    "FeatureFolder",
    "Items",
    "compute_abx",
    "compute_abx_modes",
    "dtw_normalised",
    "format_table",
    "item_frame_range",
    "pair_distances",
    "prepare_frames",
    "read_item_file",
    "read_results_json",
    "read_units_jsonl",
    "units_as_features",
    "write_cells_csv",
    "write_results_json",
]
