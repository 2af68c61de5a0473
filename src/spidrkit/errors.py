"""One exception hierarchy for spidrkit; the CLI turns each into a one-line message."""

from __future__ import annotations


class SpidrkitError(Exception):
    """Base class of every error spidrkit raises on purpose (bad input, bad config, ...)."""


class ConfigError(SpidrkitError):
    """A configuration value or file is invalid. The message names every bad key."""


class AudioError(SpidrkitError):
    """An audio file cannot be read or used. The message names the file."""


class DataError(SpidrkitError):
    """A manifest, item file, label file or unit file is malformed. The message names the file."""


class CheckpointError(SpidrkitError):
    """A checkpoint is missing, truncated, or does not match the model."""


class DownloadError(SpidrkitError):
    """A download failed or its SHA-256 did not match."""
