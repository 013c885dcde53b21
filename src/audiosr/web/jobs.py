"""One job of the page: check the upload, upsample it, make the A/B input and the picture.

Nothing here knows about Gradio: the page calls :func:`describe_input` when a file is loaded
and :func:`run_job` when the button is pressed, in a worker thread. Every file a job writes
goes into its own folder under the server's work folder; a failed job removes its folder, a
finished one is removed by :func:`sweep` (and by the server's cache clean-up) later.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..api import Upsampler
from ..audio_io import (
    MAX_CHANNELS,
    AtomicWriter,
    AudioInfo,
    audio_info,
    resample_stream,
    stream_audio,
)
from ..errors import AudioReadError, AudioSRError
from ..pipeline import SAMPLE_RATE, UpsampleReport
from .models import JobCancelled, ModelCache, engine_with_options
from .settings import (
    Request,
    WebOptions,
    command_line,
    parse_command,
    pipeline_options,
    sampling_options,
    shell_line,
)

log = logging.getLogger(__name__)

BLOCK_FRAMES = 1 << 17  # frames per block when streaming the A/B input and the picture
OUTPUT_SUFFIX = "_AudioSR_Processed_48K"  # the CLI's default, so downloads are named alike

# (done, total, what) -> None; done/total None: no count (a phase without a bar).
Progress = Callable[[int | None, int | None, str], None]


@dataclass(frozen=True)
class InputSummary:
    """What the page shows as soon as a file is loaded."""

    name: str
    info: AudioInfo
    band_limits_hz: tuple[float, ...]  # detected per channel, at most the file's Nyquist (Hz)

    @property
    def band_limit_hz(self) -> float:
        """The lowest channel's band limit (Hz): what a manual band limit starts from."""
        return min(self.band_limits_hz)

    def markdown(self) -> str:
        info = self.info
        nyquist = info.sample_rate / 2

        def label(hz: float) -> str:
            full = " (up to the file's Nyquist frequency)" if hz >= 0.99 * nyquist else ""
            return f"{hz / 1000:.1f} kHz{full}"

        groups: dict[str, list[int]] = {}
        for c, hz in enumerate(self.band_limits_hz):
            groups.setdefault(label(hz), []).append(c + 1)
        if len(groups) == 1:
            band = f"detected band limit **{next(iter(groups))}**"
        else:
            parts = [f"**{k}** (ch {', '.join(map(str, v))})" for k, v in groups.items()]
            band = "detected band limits " + "; ".join(parts)
        return (
            f"**{self.name}**: {info.sample_rate} Hz, {info.channels} channel"
            f"{'s' if info.channels != 1 else ''}, {info.duration_s:.2f} s, "
            f"{info.format} {info.subtype}; {band}"
        )


@dataclass(frozen=True)
class JobResult:
    """The files and figures of a finished job."""

    output_wav: Path  # the 48 kHz result (PCM_24 WAV)
    input_wav: Path  # the input at 48 kHz, level-matched to the output, for A/B listening
    picture: Path  # input and output spectrograms, one PNG
    report: UpsampleReport
    request: Request  # with the seed that was used
    input_name: str
    input_info: AudioInfo
    seconds: float  # processing time, without waiting for or loading the model
    load_seconds: float  # time spent loading the model for this job (0 when already loaded)
    input_gain: float  # gain applied to the A/B input to match the output's level
    command: str  # the equivalent command line

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time / audio duration (below 1: faster than real time)."""
        duration = self.input_info.duration_s
        return self.seconds / duration if duration > 0 else math.nan

    def details(self) -> dict[str, object]:
        """Machine-readable summary (the API's last output)."""
        r = self.report
        return {
            "input": self.input_name,
            "input_sample_rate": self.input_info.sample_rate,
            "channels": self.input_info.channels,
            "duration_s": round(self.input_info.duration_s, 4),
            "band_limit_hz": round(r.cutoff_hz, 1),
            "band_limit_source": "manual" if self.request.band_limit == "manual" else "detected",
            "passthrough": r.passthrough,
            "passthrough_reason": r.reason,
            "segments": r.segments,
            "engine": self.request.engine,
            "model": self.request.model if self.request.engine == "audiosr" else None,
            "seed": self.request.seed if self.request.engine == "audiosr" else None,
            "seconds": round(self.seconds, 3),
            "model_load_seconds": round(self.load_seconds, 3),
            "rtf": round(self.rtf, 4),
            "ab_input_gain": round(self.input_gain, 4),
            "command": self.command,
        }

    def markdown(self) -> str:
        r, q = self.report, self.request
        source = "manual" if q.band_limit == "manual" else "detected"
        lines = [f"**band limit** {r.cutoff_hz / 1000:.2f} kHz ({source})"]
        if not r.passthrough and len(set(r.cutoffs_hz)) > 1:
            per_channel = r.describe().removeprefix("band limits ")
            lines[0] = f"**band limits** ({source}): {per_channel}"
        if r.passthrough:
            lines.append(f"**passed through unchanged**: {r.reason}")
        else:
            lines.append(f"**segments** {r.segments} per channel")
        lines.append(
            f"**time** {self.seconds:.2f} s for {self.input_info.duration_s:.2f} s of audio "
            f"(RTF {self.rtf:.3f})"
            + (f"; model loaded in {self.load_seconds:.1f} s" if self.load_seconds > 0.05 else "")
        )
        if q.engine == "audiosr":
            steps = f"{q.steps} steps" if q.steps else "the preset's steps"
            engine = (
                f"audiosr ({q.model}), preset {q.preset}, {steps}, guidance {q.guidance:g}, "
                f"seed {q.seed}"
            )
        else:
            engine = q.engine
        extras = [
            "pre-filter on" if q.prefilter else "pre-filter off",
            "loudness kept" if q.keep_loudness else "peak-normalised like the original",
        ]
        lines.append(f"**engine** {engine}; {', '.join(extras)}")
        lines.append(f"**A/B**: input at 48 kHz, gain {self.input_gain:.3f} to match the output")
        return "  \n".join(lines) + f"\n\n```bash\n{self.command}\n```"


def _public_message(exc: BaseException, path: Path, name: str) -> str:
    """One line for the page: the server's temporary path replaced by the upload's name."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(str(path), name)


def check_upload(path: str | os.PathLike[str], web: WebOptions, upload_root: Path) -> AudioInfo:
    """Check an uploaded file before any work: where it is, its size, channels and duration.

    Args:
        path: the upload as the server stored it.
        web: the limits.
        upload_root: the folder uploads are stored in; anything else is refused, so a client
            can never make the server read a path of its choosing.

    Raises:
        AudioSRError: a one-line reason (paths replaced by the upload's file name).
    """
    p = Path(path)
    name = p.name
    resolved = p.resolve()
    if not resolved.is_relative_to(upload_root.resolve()):
        raise AudioSRError(f"{name}: not an uploaded file")
    try:
        size = resolved.stat().st_size
    except OSError:
        raise AudioSRError(f"{name}: the upload is gone; upload it again") from None
    if size > web.max_upload_bytes:
        raise AudioSRError(
            f"{name}: the file is {size / 1e6:.1f} MB; this server takes at most "
            f"{web.max_upload_mb:g} MB"
        )
    try:
        info = audio_info(resolved)
    except AudioSRError as exc:
        raise AudioReadError(_public_message(exc, resolved, name)) from None
    if info.channels > MAX_CHANNELS:
        raise AudioReadError(
            f"cannot read {name}: {info.channels} channels; at most {MAX_CHANNELS} are "
            "supported (mix down or split the channels first)"
        )
    if info.frames <= 0 or info.sample_rate <= 0:
        raise AudioReadError(f"cannot read {name}: no audio in the file (0 samples)")
    if info.duration_s > web.max_duration_s:
        raise AudioSRError(
            f"{name}: {info.duration_s:.1f} s long; this server takes at most "
            f"{web.max_duration_s:g} s (cut it, or run `audiosr` on the command line)"
        )
    return info


def describe_input(
    path: str | os.PathLike[str], web: WebOptions, upload_root: Path
) -> InputSummary:
    """Header facts and the detected band limit of an upload (what the page shows on load).

    Raises:
        AudioSRError: as :func:`check_upload`, or the file cannot be decoded.
    """
    from ..pipeline import analyse_file

    p = Path(path)
    info = check_upload(p, web, upload_root)
    try:
        _, band_limit = analyse_file(p)
    except AudioSRError as exc:
        raise AudioReadError(_public_message(exc, p.resolve(), p.name)) from None
    return InputSummary(p.name, info, tuple(float(hz) for hz in band_limit))


def sweep(work_root: Path, older_than_s: float) -> None:
    """Remove job folders under ``work_root`` last changed more than ``older_than_s`` ago."""
    if not work_root.is_dir():
        return
    now = time.time()
    for job_dir in work_root.iterdir():
        try:
            if job_dir.is_dir() and now - job_dir.stat().st_mtime > older_than_s:
                shutil.rmtree(job_dir, ignore_errors=True)
        except OSError:
            continue


def run_job(
    path: str | os.PathLike[str],
    request: Request,
    web: WebOptions,
    models: ModelCache,
    work_root: Path,
    upload_root: Path,
    progress: Progress,
    cancelled: Callable[[], bool],
) -> JobResult:
    """Upsample one upload with ``request``'s settings.

    Args:
        path: the uploaded file (must lie under ``upload_root``).
        request: the settings; a random seed is drawn here when asked for.
        web: server settings and limits.
        models: shared loaded engines.
        work_root: folder for job folders (each job writes only inside its own).
        upload_root: where uploads are stored.
        progress: told about phases and segment counts.
        cancelled: polled at every progress point; True stops the job (:class:`JobCancelled`).

    Returns:
        The result; its files are in a new folder under ``work_root``.

    Raises:
        AudioSRError: bad input, missing weights, cancellation (one line, no server paths).
    """
    src = Path(path)
    name = src.name
    request.check(web)
    request = request.with_seed()
    info = check_upload(src, web, upload_root)
    args = command_line(request, web, name)
    parsed = parse_command(args)
    key = models.key(request.engine, request.model)

    def checkpoint() -> None:
        if cancelled():
            raise JobCancelled("cancelled")

    def segments(done: int, total: int) -> None:
        checkpoint()
        progress(done, total, "segments")

    work_root.mkdir(parents=True, exist_ok=True)
    sweep(work_root, web.keep_results_s)
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=work_root))
    stem = Path(name).stem or "audio"
    out_wav = job_dir / f"{stem}{OUTPUT_SUFFIX}.wav"
    try:
        load_seconds = 0.0
        if not models.is_loaded(key):
            progress(None, None, f"loading {key.label()}")
            start = time.perf_counter()
            engine = models.get(key)
            load_seconds = time.perf_counter() - start
        else:
            engine = models.get(key)
        options = sampling_options(parsed) if request.engine == "audiosr" else None
        with models.slot(
            key, cancelled, lambda: progress(None, None, f"waiting for {key.label()} (busy)")
        ):
            checkpoint()
            start = time.perf_counter()
            progress(0, None, "reading the input and detecting its band limit")
            job_engine = engine_with_options(engine, options) if options else engine
            upsampler = Upsampler(job_engine, pipeline_options(parsed))
            report = upsampler.upsample_file(src, out_wav, progress=segments)
            seconds = time.perf_counter() - start
        checkpoint()
        progress(None, None, "drawing the spectrograms")
        in_wav = job_dir / f"{stem}_input_48k.wav"
        gain, x_mono, y_mono = _ab_input(src, info, out_wav, in_wav, checkpoint)
        picture = _picture(name, info, x_mono, y_mono, report, job_dir / f"{stem}.png")
    except JobCancelled:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    except AudioSRError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise type(exc)(_public_message(exc, src.resolve(), name)) from None
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return JobResult(
        output_wav=out_wav,
        input_wav=in_wav,
        picture=picture,
        report=report,
        request=request,
        input_name=name,
        input_info=info,
        seconds=seconds,
        load_seconds=load_seconds,
        input_gain=gain,
        command=shell_line(args),
    )


def _ab_input(
    src: Path,
    info: AudioInfo,
    out_wav: Path,
    in_wav: Path,
    checkpoint: Callable[[], None],
) -> tuple[float, np.ndarray, np.ndarray]:
    """Write the input at 48 kHz, level-matched to the output, for A/B listening.

    The gain is the least-squares fit of the output onto the resampled input,
    ``g = <x, y> / <x, x>`` over all samples and channels. Below the band limit the output
    is the input times the pipeline's output gain and above it the input has (nearly) no
    energy, so ``g`` is that gain: 1 when the loudness is kept, the original's normalisation
    otherwise. Two streaming passes, so memory does not grow with the file's length.

    Returns:
        ``(gain, input mono [T48] float32 (gain applied), output mono [T48] float32)``: the
        channel means used for the picture.
    """
    total = sf.info(str(out_wav)).frames

    def input_blocks():
        done = 0
        for block in resample_stream(stream_audio(src, BLOCK_FRAMES), info.sample_rate,
                                     SAMPLE_RATE):  # fmt: skip
            block = block[:, : total - done]
            done += block.shape[1]
            if block.shape[1]:
                yield block
        if done < total:
            yield np.zeros((info.channels, total - done), np.float32)

    xy = xx = 0.0
    x_mono = np.empty(total, np.float32)
    y_mono = np.empty(total, np.float32)
    at = 0
    with sf.SoundFile(out_wav) as out:
        for x in input_blocks():
            checkpoint()
            y = out.read(x.shape[1], dtype="float32", always_2d=True).T
            xy += float(np.vdot(x.astype(np.float64), y.astype(np.float64)))
            xx += float(np.vdot(x.astype(np.float64), x.astype(np.float64)))
            n = x.shape[1]
            x_mono[at : at + n] = x.mean(axis=0)
            y_mono[at : at + n] = y.mean(axis=0)
            at += n
    gain = xy / xx if xx > 0 and xy > 0 else 1.0
    x_mono *= gain
    with AtomicWriter(in_wav, SAMPLE_RATE, info.channels, "PCM_24", protect=[src]) as writer:
        for x in input_blocks():
            writer.write(x * gain)
    return gain, x_mono, y_mono


def _picture(
    name: str,
    info: AudioInfo,
    x_mono: np.ndarray,
    y_mono: np.ndarray,
    report: UpsampleReport,
    path: Path,
) -> Path:
    """Input and output spectrograms side by side, one colour scale, band limit dashed."""
    from ..eval.plots import save_spectrogram_comparison

    rate = f"{info.sample_rate / 1000:g} kHz"
    title = f"{name}: band limit {report.cutoff_hz / 1000:.1f} kHz (dashed line)"
    panels = [(f"input ({rate}, shown at 48 kHz)", x_mono), ("output (48 kHz)", y_mono)]
    return save_spectrogram_comparison(
        panels, SAMPLE_RATE, path, title=title, cutoff_hz=report.cutoff_hz
    )
