"""User-facing errors: each carries a one-line message that the CLI prints without a traceback."""

from __future__ import annotations


class AudioSRError(Exception):
    """Base class of every error the CLI reports as a single line (exit status 1)."""


class AudioReadError(AudioSRError):
    """An input file is missing, unreadable, empty or holds invalid samples."""


class AudioWriteError(AudioSRError):
    """An output could not be written (permissions, disk, or it would overwrite an input)."""


class CheckpointError(AudioSRError):
    """A checkpoint is missing, truncated, not a checkpoint, or does not fit the config."""
