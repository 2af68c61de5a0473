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


class OutputError(SpidrkitError):
    """An output cannot be written (disk full, read-only, no permission). The message names the
    file; the previous version of that file, if any, is left intact."""


def worker_message(text: str) -> str:
    """The original one-line message of an error re-raised by a DataLoader worker.

    torch re-raises a worker's exception with ``"Caught X in DataLoader worker process N.\n
    Original Traceback ..."`` as its message; the last line holds the original ``X: message``.
    """
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    name, sep, rest = last.partition(": ")
    return rest if sep and name.rsplit(".", 1)[-1].isidentifier() else last
