"""Reading, resampling and writing audio files: float32 ``[C, T]`` in, float32 ``[C, T]`` out.

Every user-facing failure is an :class:`~audiosr.errors.AudioReadError` or
:class:`~audiosr.errors.AudioWriteError` whose message is one line naming the file and the
reason, so the CLI can print it without a traceback.

* Decoding goes through soundfile (libsndfile: WAV 8/16/24/32-bit int and float, FLAC, OGG
  Vorbis, Opus, MP3, AIFF, ...). Containers libsndfile does not know (M4A/AAC, WMA, ...) go
  through PyAV, a dependency whose wheels bundle FFmpeg (if it is missing, the error says
  ``pip install av``).
* Long files: :func:`audio_info` reads only the header and :func:`stream_audio` yields blocks,
  so hours of audio need not be held in memory; :func:`resample_stream` and
  :class:`AtomicWriter` complete the streaming path.
* Writes are atomic: a temporary file in the destination folder is renamed over the target only
  once it is complete, so a crash or a full disk never leaves a half-written output, and a list
  of input paths can be protected from being overwritten.
* Temporary names: ``.<name>.<pid>.<8 random>.part`` next to the output (a hashed
  ``.audiosr-<16 hex>.`` prefix when the output's name is too long for that), so they stay
  within the 255-byte name limit; files of this pattern whose process is gone are removed
  before the same output is written again (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioReadError, AudioWriteError

log = logging.getLogger(__name__)

# 7.1 surround is the widest common layout; anything wider is more likely a multitrack
# recording or a mis-shaped array than music to upsample, and each channel costs a full run.
MAX_CHANNELS = 8

# Suffixes libsndfile decodes itself: a failure there means a damaged file, not a missing codec.
_SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
     ".au", ".snd", ".caf", ".w64", ".rf64"}
)  # fmt: skip
# Output suffix -> libsndfile container.
_WRITE_FORMATS = {
    ".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG",
    ".mp3": "MP3", ".aif": "AIFF", ".aiff": "AIFF", ".w64": "W64", ".rf64": "RF64", ".caf": "CAF",
}  # fmt: skip
# Subtype used when `subtype=None`: 24-bit PCM for PCM containers (a float32 signal loses
# nothing audible and the file is 25 % smaller than float), the codec itself otherwise.
_DEFAULT_SUBTYPES = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}
# Bytes per sample of the PCM/float subtypes, and the most sample data a WAV file can hold
# (its chunk sizes are 32-bit; a margin is left for the header chunks).
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
                 "DOUBLE": 8}  # fmt: skip
_WAV_MAX_DATA_BYTES = 0xFFFFFFFF - 0x10000
# A data-chunk size a streaming writer leaves in the header when it cannot seek back to fix it.
_PLACEHOLDER_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
NAME_MAX = 255  # bytes in one file name (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)
# What a temporary name adds after its prefix: "<pid>." (pid_max is 2**22: 7 digits),
# 8 random characters from tempfile.mkstemp, and ".part" or ".spool".
_TEMP_TAIL_BYTES = 7 + 1 + 8 + 6
_RANDOM = r"[a-z0-9_]{8}"  # tempfile's random part
# Temporary files of versions before the pid was part of the name: removed when this old.
_LEGACY_TEMP_AGE_S = 3600.0


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding the samples."""

    frames: int  # samples per channel (an estimate for some compressed streams)
    sample_rate: int  # Hz
    channels: int
    format: str  # container, e.g. "WAV", "FLAC", "MP3", or the PyAV format name
    subtype: str  # sample encoding, e.g. "PCM_16", "FLOAT", "VORBIS", or the codec name

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


# --------------------------------------------------------------------------------------------
# Reading


def _one_line(text: object) -> str:
    """Collapse a library message (which may span lines) into one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def _read_error(path: Path, reason: str) -> AudioReadError:
    return AudioReadError(f"cannot read {path}: {_one_line(reason)}")


def _check_path(path: str | os.PathLike[str]) -> Path:
    """Reject what is not a non-empty regular file, before any decoder sees it."""
    p = Path(path)
    if not p.exists():
        raise _read_error(p, "no such file")
    if p.is_dir():
        raise _read_error(p, "it is a directory, not an audio file")
    if not p.is_file():
        raise _read_error(p, "not a regular file")
    if p.stat().st_size == 0:
        raise _read_error(p, "empty file (0 bytes)")
    return p


def _libsndfile_reason(path: Path, err: Exception) -> str:
    """The decoder's reason without the echoed path; we already know the file exists."""
    reason = _one_line(getattr(err, "error_string", None) or err)
    # mpg123 reports a file with no decodable frame as if it did not exist.
    if "does not exist" in reason or "not a regular file" in reason:
        reason = "no decodable audio frames"
    return reason


def _check_channels(path: Path, channels: int, max_channels: int) -> None:
    if channels > max_channels:
        raise _read_error(
            path,
            f"{channels} channels; at most {max_channels} are supported "
            "(mix down or split the channels first)",
        )


def _check_finite(path: Path, audio: np.ndarray, offset: int = 0) -> None:
    bad = int(audio.size - np.count_nonzero(np.isfinite(audio)))
    if bad:
        where = f" (in the block starting at sample {offset})" if offset else ""
        raise _read_error(path, f"{bad} NaN/Inf sample{'s' if bad > 1 else ''}{where}")


def _check_wav_truncation(path: Path, f: sf.SoundFile) -> None:
    """Refuse a WAV whose data chunk is shorter than its header says (a cut-off file).

    libsndfile silently shortens such a file to what is there; its header log records the
    declared and the real sizes as ``data : 6000 (should be 2978)``. Placeholder sizes, which
    streaming writers leave in the header, are not truncation.
    """
    if f.format not in ("WAV", "WAVEX"):
        return
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", f.extra_info, re.MULTILINE)
    if m is None:
        return
    declared, actual = int(m.group(1)), int(m.group(2))
    if declared > actual and declared not in _PLACEHOLDER_SIZES:
        raise _read_error(
            path,
            f"truncated file: the header declares {declared} bytes of audio, "
            f"the file holds {actual}",
        )


def _import_av() -> ModuleType | None:
    """PyAV (a dependency; None if it was removed or cannot load)."""
    try:
        import av
    except ImportError:
        return None
    return av


def _no_decoder(path: Path, reason: str) -> AudioReadError:
    return _read_error(
        path,
        f"libsndfile cannot decode {path.suffix or 'this'} files ({reason}); "
        "for M4A/AAC and other formats install PyAV: pip install av",
    )


def _av_open(path: Path) -> tuple[Any, Any]:
    """Open with PyAV: ``(container, first audio stream)``."""
    av = _import_av()
    assert av is not None
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise _read_error(path, f"not a readable audio file (PyAV: {err})") from None
    if not container.streams.audio:
        container.close()
        raise _read_error(path, "the file has no audio stream")
    return container, container.streams.audio[0]


def _av_blocks(path: Path, max_channels: int) -> Iterator[tuple[np.ndarray, int]]:
    """Decode with PyAV: yields ``(samples [C, n] float32, sample_rate)`` per decoded frame."""
    av = _import_av()
    assert av is not None
    container, stream = _av_open(path)
    with container:
        _check_channels(path, stream.channels, max_channels)
        # Convert every frame to planar float32 at the stream's own rate and layout, whatever
        # the codec's native sample format (s16, s32p, fltp, ...).
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray(), stream.rate
            for out in resampler.resample(None):
                yield out.to_ndarray(), stream.rate
        except av.error.FFmpegError as err:
            raise _read_error(path, f"corrupt or truncated (PyAV: {err})") from None


def _raise_unless_av(path: Path, err: Exception) -> None:
    """After libsndfile failed: raise, unless PyAV is the decoder to try next."""
    reason = _libsndfile_reason(path, err)
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        raise _read_error(path, f"corrupt, truncated or not audio ({reason})") from None
    if _import_av() is None:
        raise _no_decoder(path, reason) from None


def read_audio(
    path: str | os.PathLike[str], *, max_channels: int = MAX_CHANNELS
) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 samples in [-1, 1].

    Args:
        path: audio file (WAV, FLAC, OGG Vorbis/Opus, MP3, ...; M4A/AAC etc. through PyAV).
        max_channels: refuse files with more channels than this.

    Returns:
        ``(audio [C, T] float32, sample_rate in Hz)``.

    Raises:
        AudioReadError: missing path, directory, empty/truncated/corrupt/non-audio file,
            no decoder, zero samples, NaN/Inf samples, or too many channels.
    """
    p = _check_path(path)
    try:
        with sf.SoundFile(p) as f:
            _check_channels(p, f.channels, max_channels)
            _check_wav_truncation(p, f)
            data = f.read(dtype="float32", always_2d=True).T
            sample_rate = int(f.samplerate)
    except sf.LibsndfileError as err:
        _raise_unless_av(p, err)
        data, sample_rate = None, 0
    if data is None:  # libsndfile does not know the container: PyAV decodes it
        blocks = list(_av_blocks(p, max_channels))
        sample_rate = blocks[0][1] if blocks else 0
        data = np.concatenate([b for b, _ in blocks], axis=1) if blocks else np.zeros((1, 0))
    if data.shape[1] == 0:
        raise _read_error(p, "no audio in the file (0 samples)")
    _check_finite(p, data)
    return np.ascontiguousarray(data), sample_rate


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header: frames, sample rate, channels, format (no samples are decoded).

    Raises:
        AudioReadError: as :func:`read_audio`, for what can be seen without decoding.
    """
    p = _check_path(path)
    try:
        info = sf.info(str(p))
        return AudioInfo(
            frames=int(info.frames),
            sample_rate=int(info.samplerate),
            channels=int(info.channels),
            format=str(info.format),
            subtype=str(info.subtype),
        )
    except sf.LibsndfileError as err:
        _raise_unless_av(p, err)
    container, stream = _av_open(p)
    with container:
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = (container.duration or 0) / 1_000_000  # microseconds
        return AudioInfo(
            frames=int(round(seconds * stream.rate)),
            sample_rate=int(stream.rate),
            channels=int(stream.channels),
            format=str(container.format.name),
            subtype=str(stream.codec_context.name),
        )


def stream_audio(
    path: str | os.PathLike[str], block_frames: int, *, max_channels: int = MAX_CHANNELS
) -> Iterator[np.ndarray]:
    """Decode a file block by block; concatenating the blocks gives :func:`read_audio`'s array.

    Args:
        path: audio file.
        block_frames: samples per channel in each block (the last block may be shorter).
        max_channels: refuse files with more channels than this.

    Yields:
        float32 blocks ``[C, n]`` with ``n == block_frames`` except for the last one.

    Raises:
        AudioReadError: as :func:`read_audio`; NaN/Inf and decoding errors are raised when the
            block holding them is reached.
    """
    if block_frames <= 0:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    p = _check_path(path)
    try:
        f = sf.SoundFile(p)
    except sf.LibsndfileError as err:
        _raise_unless_av(p, err)
        f = None
    if f is None:  # libsndfile does not know the container: PyAV decodes it
        yield from _rebuffer(p, (b for b, _ in _av_blocks(p, max_channels)), block_frames)
        return
    with f:
        _check_channels(p, f.channels, max_channels)
        _check_wav_truncation(p, f)
        offset = 0
        try:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                block = np.ascontiguousarray(block.T)
                _check_finite(p, block, offset)
                offset += block.shape[1]
                yield block
        except sf.LibsndfileError as err:
            raise _read_error(p, f"corrupt or truncated ({_libsndfile_reason(p, err)})") from None
    if offset == 0:
        raise _read_error(p, "no audio in the file (0 samples)")


def _rebuffer(path: Path, blocks: Iterable[np.ndarray], block_frames: int) -> Iterator[np.ndarray]:
    """Re-cut decoder frames of any size into blocks of ``block_frames`` samples."""
    pending: list[np.ndarray] = []
    held = offset = 0
    for block in blocks:
        pending.append(block)
        held += block.shape[1]
        while held >= block_frames:
            joined = np.concatenate(pending, axis=1)
            out, rest = joined[:, :block_frames], joined[:, block_frames:]
            pending, held = [rest], rest.shape[1]
            _check_finite(path, out, offset)
            offset += block_frames
            yield np.ascontiguousarray(out)
    if held:
        out = np.concatenate(pending, axis=1)
        _check_finite(path, out, offset)
        offset += held
        yield np.ascontiguousarray(out)
    if offset == 0:
        raise _read_error(path, "no audio in the file (0 samples)")


# --------------------------------------------------------------------------------------------
# Resampling


def _check_rates(orig_sr: int, new_sr: int) -> None:
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")


def resample(audio: np.ndarray, orig_sr: int, new_sr: int, *, quality: str = "VHQ") -> np.ndarray:
    """Band-limited resampling with libsoxr (linear phase, ~0.96 of Nyquist kept).

    Args:
        audio: ``[C, T]`` (or ``[T]``) samples.
        orig_sr: input rate in Hz.
        new_sr: output rate in Hz.
        quality: soxr quality ("VHQ", "HQ", "MQ", "LQ", "QQ").

    Returns:
        float32 ``[C, T']`` (``[T']`` for a 1-D input), ``T' = round(T * new_sr / orig_sr)``
        to within one sample. Equal rates return a float32 copy.
    """
    _check_rates(orig_sr, new_sr)
    x = np.asarray(audio, dtype=np.float32)
    if orig_sr == new_sr:
        return x.copy()
    if x.ndim == 1:
        return soxr.resample(x, orig_sr, new_sr, quality=quality)
    # soxr takes [frames, channels].
    y = soxr.resample(np.ascontiguousarray(x.T), orig_sr, new_sr, quality=quality)
    return np.ascontiguousarray(y.T)


def resample_stream(
    blocks: Iterable[np.ndarray], orig_sr: int, new_sr: int, *, quality: str = "VHQ"
) -> Iterator[np.ndarray]:
    """Resample a stream of ``[C, n]`` blocks with bounded memory (libsoxr's stream API).

    The concatenated output matches :func:`resample` of the concatenated input up to float32
    rounding. Blocks may be of any size; empty output blocks are not yielded.
    """
    _check_rates(orig_sr, new_sr)
    stream: soxr.ResampleStream | None = None
    channels = 0
    for block in blocks:
        x = np.asarray(block, dtype=np.float32)
        if orig_sr == new_sr:
            yield x.copy()
            continue
        if stream is None:
            channels = x.shape[0]
            stream = soxr.ResampleStream(orig_sr, new_sr, channels, "float32", quality=quality)
        y = stream.resample_chunk(np.ascontiguousarray(x.T))
        if len(y):
            yield np.ascontiguousarray(y.T)
    if stream is not None:
        tail = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
        if len(tail):
            yield np.ascontiguousarray(tail.T)


# --------------------------------------------------------------------------------------------
# Writing


def _write_error(path: Path, reason: str) -> AudioWriteError:
    return AudioWriteError(f"cannot write {path}: {_one_line(reason)}")


def _resolve_format(path: Path, subtype: str | None) -> tuple[str, str]:
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_WRITE_FORMATS))
        raise _write_error(path, f"unknown output type {path.suffix!r}; use one of {known}")
    if subtype is None:
        subtype = "OPUS" if path.suffix.lower() == ".opus" else _DEFAULT_SUBTYPES.get(fmt, "PCM_24")
    if not sf.check_format(fmt, subtype):
        allowed = ", ".join(sf.available_subtypes(fmt))
        raise _write_error(path, f"{fmt} files cannot hold subtype {subtype}; use one of {allowed}")
    return fmt, subtype


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def fit_name(name: str, max_bytes: int = NAME_MAX) -> str:
    """``name`` if it fits in ``max_bytes`` bytes (UTF-8), else a shortened, hashed form.

    The original package replaced a name longer than 255 characters by a hash of it; here
    the start of the stem is kept (cut at a character boundary) and ``~`` plus 12 hex digits
    of the SHA-1 of the full name are appended before the extension, so different long
    names stay different and the result is the same on every run.
    """
    if len(os.fsencode(name)) <= max_bytes:
        return name
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, f"{dot}{ext}") if dot and len(ext) <= 16 else (name, "")
    tag = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    room = max_bytes - len(os.fsencode(tag + ext))
    head = os.fsencode(stem)[:room].decode("utf-8", errors="ignore")
    return head + tag + ext


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """Hidden name prefix of the temporary files that become ``path``.

    ``.<name>.`` when ``.<name>.<pid>.<random>.part`` fits in :data:`NAME_MAX` bytes, else
    ``.audiosr-<16 hex of SHA-1 of the name>.``.
    """
    name = Path(path).name
    full = f".{name}."
    if len(os.fsencode(full)) + _TEMP_TAIL_BYTES <= NAME_MAX:
        return full
    return f".audiosr-{hashlib.sha1(os.fsencode(name)).hexdigest()[:16]}."


def output_mode(path: str | os.PathLike[str]) -> int:
    """Permission bits for a new file at ``path``: those of the file it replaces, else
    ``0o666`` less the process umask (what ``open()`` would give; ``mkstemp`` gives 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else, or no way to tell: keep its files
        return True
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files that a killed earlier run left for the output ``path``.

    Only names of our exact pattern for this output are touched
    (``<temp_prefix>.<pid>.<8 random>.part``, and the ``.spool`` folders of
    :func:`spool_directory`), and only when process ``pid`` no longer runs. Temporary files
    of older versions (``.<name>.<8 random>.part``, no pid) are removed once an hour old.

    Returns:
        The removed paths.
    """
    target = Path(path)
    folder = target.parent
    prefix = re.escape(temp_prefix(target))
    ours = re.compile(prefix + r"(\d+)\." + _RANDOM + r"\.(part|spool)")
    legacy = re.compile(re.escape(f".{target.name}.") + _RANDOM + r"\.part")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet, or not readable: nothing of ours can be there
        return removed
    for entry in entries:
        match = ours.fullmatch(entry.name)
        try:
            if match is not None:
                if _process_alive(int(match.group(1))):
                    continue
                if match.group(2) == "spool":
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    shutil.rmtree(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                else:
                    continue
            elif legacy.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                if time.time() - entry.stat().st_mtime < _LEGACY_TEMP_AGE_S:
                    continue
                os.unlink(entry.path)
            else:
                continue
        except OSError as err:
            log.debug("could not remove %s: %s", entry.path, err)
            continue
        removed.append(Path(entry.path))
        log.info("removed %s, left by an interrupted run", entry.path)
    return removed


def spool_directory(path: str | os.PathLike[str]) -> tempfile.TemporaryDirectory[str]:
    """A hidden temporary folder next to the output ``path`` (removed when its block ends).

    Named like the temporary files (``<temp_prefix><pid>.<8 random>.spool``), so
    :func:`remove_stale_temps` finds one a killed run left behind.
    """
    target = Path(path)
    return tempfile.TemporaryDirectory(
        prefix=f"{temp_prefix(target)}{os.getpid()}.", suffix=".spool", dir=target.parent
    )


class AtomicWriter:
    """Write a long output block by block; it appears at ``path`` only once complete.

    Samples go to a hidden temporary file in the destination folder (see :func:`temp_prefix`;
    stale ones of earlier, killed runs are removed first); on a clean exit of the
    ``with`` block it is flushed to disk and renamed over ``path`` (``os.replace``, atomic on
    POSIX and Windows); on an exception it is deleted and ``path`` is left as it was.

    Example:
        >>> with AtomicWriter("out.wav", 48_000, channels=2) as w:  # doctest: +SKIP
        ...     for block in blocks:  # each [2, n] float32
        ...         w.write(block)

    Args:
        path: destination file; its suffix picks the container (.wav, .flac, .ogg, .mp3, ...).
        sample_rate: Hz.
        channels: number of channels of every block.
        subtype: sample encoding, e.g. "PCM_16", "PCM_24", "FLOAT"; None picks PCM_24 for PCM
            containers and the codec for OGG/MP3/Opus.
        protect: input paths that must never be overwritten.
        clip: for integer subtypes, clip samples to [-1, 1] (and log how many); libsndfile
            saturates anyway, so this only makes the clipping visible.
        frames: the number of frames that will be written, if known. A WAV file holds at
            most 4 GiB of samples (32-bit sizes: about 3.9 h of 48 kHz stereo PCM_24); a
            longer output is written as RF64 (the 64-bit WAV that libsndfile, ffmpeg and
            common audio tools read) under the same name.

    Raises:
        AudioWriteError: the target is a protected input or a directory, the folder cannot be
            created or written, or the encoder fails (e.g. disk full).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        channels: int,
        subtype: str | None = None,
        *,
        protect: Iterable[str | os.PathLike[str]] = (),
        clip: bool = True,
        frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.format, self.subtype = _resolve_format(self.path, subtype)
        if self.format == "WAV" and frames is not None:
            data_bytes = frames * self.channels * _SAMPLE_BYTES.get(self.subtype, 8)
            if data_bytes > _WAV_MAX_DATA_BYTES:
                self.format = "RF64"
        self.clip = clip and self.subtype.startswith("PCM")
        self.frames_written = 0
        self._clipped = 0
        self._tmp: Path | None = None
        self._file: sf.SoundFile | None = None
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        for other in protect:
            if _same_file(self.path, Path(other)):
                raise _write_error(self.path, "refusing to overwrite an input file")
        if self.path.is_dir():
            raise _write_error(self.path, "it is a directory")

    def __enter__(self) -> AtomicWriter:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.path)
            fd, tmp = tempfile.mkstemp(
                prefix=f"{temp_prefix(self.path)}{os.getpid()}.", suffix=".part", dir=folder
            )
        except OSError as err:
            blocker = next((a for a in (folder, *folder.parents) if a.is_file()), None)
            reason = (
                f"{blocker} is a file, not a folder"
                if blocker is not None
                else f"folder {folder} is not writable ({err.strerror})"
            )
            raise _write_error(self.path, reason) from None
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            self._file = sf.SoundFile(
                self._tmp,
                "w",
                samplerate=self.sample_rate,
                channels=self.channels,
                subtype=self.subtype,
                format=self.format,
            )
        except (sf.LibsndfileError, OSError) as err:
            self._discard()
            raise _write_error(self.path, str(err)) from None
        return self

    def write(self, block: np.ndarray) -> None:
        """Append ``block [C, n]`` (``[n]`` for mono) of float samples."""
        if self._file is None:
            raise RuntimeError("AtomicWriter.write() called outside its `with` block")
        x = np.asarray(block, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(
                f"expected a [{self.channels}, n] block (channels first), got {tuple(x.shape)}"
            )
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise _write_error(self.path, f"the audio holds {bad} NaN/Inf samples")
        if self.clip:
            over = int(np.count_nonzero(np.abs(x) > 1.0))
            if over:
                self._clipped += over
                x = np.clip(x, -1.0, 1.0)
        try:
            self._file.write(np.ascontiguousarray(x.T))
        except (sf.LibsndfileError, OSError) as err:
            raise _write_error(self.path, str(err)) from None
        self.frames_written += x.shape[1]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            assert self._file is not None and self._tmp is not None
            self._file.close()
            self._file = None
            # Flush to disk before the rename, so a crash cannot leave a renamed empty file.
            with open(self._tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            # mkstemp creates 0600 files; give the output the permissions of the file it
            # replaces, or those the umask gives new files.
            os.chmod(self._tmp, output_mode(self.path))
            os.replace(self._tmp, self.path)
        except (sf.LibsndfileError, OSError) as err:
            self._discard()
            raise _write_error(self.path, str(err)) from None
        self._tmp = None
        if self._clipped:
            log.warning("%s: clipped %d samples outside [-1, 1]", self.path, self._clipped)

    def _discard(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except (sf.LibsndfileError, OSError):
                pass  # already failing; the temp file is removed below either way
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    subtype: str | None = "PCM_24",
    *,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``audio [C, T]`` (or ``[T]``) atomically; see :class:`AtomicWriter`.

    Args:
        path: destination; the suffix picks the container.
        audio: float samples in [-1, 1], channels first.
        sample_rate: Hz.
        subtype: "PCM_24" (default), "PCM_16", "FLOAT", ...; None picks the container's
            default (the codec for OGG/MP3/Opus, which do not hold PCM).
        protect: input paths that must never be overwritten.

    Returns:
        The written path.

    Raises:
        AudioWriteError: see :class:`AtomicWriter`.
    """
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"audio must be [C, T] or [T], got shape {tuple(x.shape)}")
    if x.shape[0] > 64 and x.shape[1] <= 64:
        raise ValueError(f"audio of shape {tuple(x.shape)} looks like [T, C]; pass [C, T]")
    p = Path(path)
    if subtype == "PCM_24" and _WRITE_FORMATS.get(p.suffix.lower()) in ("OGG", "MP3"):
        subtype = None  # the default does not apply to lossy containers
    with AtomicWriter(p, sample_rate, x.shape[0], subtype, protect=protect, frames=x.shape[1]) as w:
        w.write(x)
    return p
