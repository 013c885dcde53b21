"""What the page is configured with (server side) and what one request asks for.

:class:`WebOptions` is fixed when the server starts (``audiosr web`` flags); :class:`Request`
is one click of the button (or one ``/upsample`` API call). A request is turned into the
equivalent ``audiosr`` command line, and that command line is parsed by the CLI's own parser
to get the sampling options, so the command shown on the page reproduces the result.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import SamplingOptions
from ..errors import AudioSRError
from ..pipeline import PipelineOptions

ENGINES = ("audiosr", "dsp", "sinc")
MODELS = ("basic", "speech")
# The presets the page offers. "upstream" is the original's own code path (channel 0 only,
# its output format), not the streaming pipeline the page runs, so it stays on the CLI.
PAGE_PRESETS = ("quality", "fast")
BAND_LIMIT_MODES = ("auto", "manual")
SEED_MAX = 2**31 - 1
MIN_MANUAL_CUTOFF_HZ = 1000.0
MAX_CUTOFF_HZ = 24000.0


@dataclass(frozen=True)
class WebOptions:
    """Server-side settings of the page (the ``audiosr web`` flags).

    Attributes:
        engine: engine selected when the page opens (``audiosr``, ``dsp`` or ``sinc``).
        model_name: official weights selected when the page opens (``basic``/``speech``).
        checkpoint: a local checkpoint used instead of the official weights (then the model
            choice shows only this file).
        config: architecture of ``checkpoint`` (the original's YAML/JSON).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        jobs_per_model: jobs that may run on one loaded model at the same time; more wait.
        max_duration_s: longest input accepted, in seconds.
        max_upload_mb: largest upload accepted, in MB (10^6 bytes).
        keep_results_s: results and uploads are deleted this many seconds after they were
            made (and all of them when the server stops).
        examples_dir: folder of example inputs shown under the upload; None: the repository's
            ``examples/`` when it exists.
    """

    engine: str = "audiosr"
    model_name: str = "basic"
    checkpoint: str | None = None
    config: str | None = None
    device: str = "auto"
    jobs_per_model: int = 1
    max_duration_s: float = 600.0
    max_upload_mb: float = 200.0
    keep_results_s: int = 3600
    examples_dir: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.checkpoint is None and self.model_name not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model_name!r}")
        if self.jobs_per_model < 1:
            raise ValueError(f"jobs per model must be >= 1, got {self.jobs_per_model}")
        if self.max_duration_s <= 0 or self.max_upload_mb <= 0:
            raise ValueError("the maximum duration and upload size must be positive")
        if self.keep_results_s < 1:
            raise ValueError(f"results must be kept >= 1 s, got {self.keep_results_s}")

    @property
    def model_choices(self) -> tuple[str, ...]:
        """What the page's model choice offers: the official names, or the checkpoint."""
        return (Path(self.checkpoint).name,) if self.checkpoint else MODELS

    @property
    def default_model(self) -> str:
        return self.model_choices[0] if self.checkpoint else self.model_name

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


@dataclass(frozen=True)
class Request:
    """The settings of one job, as the page's controls (and the API's parameters) give them.

    Attributes:
        engine: ``audiosr``, ``dsp`` or ``sinc``.
        model: ``basic``/``speech``, or the server's checkpoint name.
        preset: ``quality`` or ``fast`` (sampler, precision, attention; diffusion only).
        steps: sampler steps; 0 takes the preset's.
        guidance: classifier-free guidance scale.
        seed: seed of the diffusion engine's random draws (ignored when ``random_seed``).
        random_seed: draw a fresh seed; the one used is reported.
        band_limit: ``auto`` (detected) or ``manual`` (``cutoff_hz``).
        cutoff_hz: the manual band limit in Hz.
        prefilter: low-pass the input at its band limit first (the MP3 "spectral hole" fix).
        keep_loudness: keep the input's level (False: the original's peak-normalised level).
    """

    engine: str = "audiosr"
    model: str = "basic"
    preset: str = "quality"
    steps: int = 0
    guidance: float = 3.5
    seed: int = 42
    random_seed: bool = False
    band_limit: str = "auto"
    cutoff_hz: float | None = None
    prefilter: bool = True
    keep_loudness: bool = True

    def check(self, web: WebOptions) -> None:
        """Reject values the page cannot run, with one line each.

        Raises:
            AudioSRError: an unknown choice or an out-of-range number.
        """
        if self.engine not in ENGINES:
            raise AudioSRError(f"unknown engine {self.engine!r}: choose {', '.join(ENGINES)}")
        if self.engine == "audiosr" and self.model not in web.model_choices:
            raise AudioSRError(
                f"unknown model {self.model!r}: choose {', '.join(web.model_choices)}"
            )
        if self.preset not in PAGE_PRESETS:
            raise AudioSRError(f"unknown preset {self.preset!r}: choose {', '.join(PAGE_PRESETS)}")
        if not 0 <= self.steps <= 1000:
            raise AudioSRError(
                f"steps must be between 1 and 1000 (0: the preset's), got {self.steps}"
            )
        if not 0 <= self.guidance <= 20:
            raise AudioSRError(f"guidance must be between 0 and 20, got {self.guidance:g}")
        if not self.random_seed and not 0 <= self.seed <= SEED_MAX:
            raise AudioSRError(f"seed must be between 0 and {SEED_MAX}, got {self.seed}")
        if self.band_limit not in BAND_LIMIT_MODES:
            raise AudioSRError(f"band limit must be 'auto' or 'manual', got {self.band_limit!r}")
        if self.band_limit == "manual":
            if self.cutoff_hz is None or not (
                MIN_MANUAL_CUTOFF_HZ <= self.cutoff_hz <= MAX_CUTOFF_HZ
            ):
                raise AudioSRError(
                    f"a manual band limit must be between {MIN_MANUAL_CUTOFF_HZ:.0f} and "
                    f"{MAX_CUTOFF_HZ:.0f} Hz, got {self.cutoff_hz}"
                )

    def with_seed(self) -> Request:
        """This request with its seed fixed: a fresh random one when ``random_seed``."""
        if not self.random_seed:
            return self
        return replace(self, seed=secrets.randbelow(SEED_MAX + 1), random_seed=False)

    @property
    def manual_cutoff_hz(self) -> float | None:
        return float(self.cutoff_hz) if self.band_limit == "manual" and self.cutoff_hz else None


def command_line(request: Request, web: WebOptions, input_name: str) -> list[str]:
    """The ``audiosr`` arguments that reproduce ``request`` on ``input_name`` (without argv[0]).

    Only what differs from the CLI's defaults is written, so the line stays short.
    """
    args: list[str] = []
    if request.engine != "audiosr":
        args += ["--engine", request.engine]
    else:
        if web.checkpoint:
            args += ["--checkpoint", web.checkpoint]
            if web.config:
                args += ["--config", web.config]
        elif request.model != "basic":
            args += ["--model_name", request.model]
        if request.preset != "quality":
            args += ["--preset", request.preset]
        if request.steps:
            args += ["--ddim_steps", str(request.steps)]
        if request.guidance != 3.5:
            args += ["-gs", f"{request.guidance:g}"]
        if request.seed != 42:
            args += ["--seed", str(request.seed)]
    if web.device != "auto":
        args += ["-d", web.device]
    if request.manual_cutoff_hz is not None:
        args += ["--cutoff", f"{request.manual_cutoff_hz:g}"]
    if not request.prefilter:
        args.append("--no_prefilter")
    if not request.keep_loudness:
        args.append("--normalize")
    return [*args, "-i", input_name, "-s", "output"]


def shell_line(args: list[str]) -> str:
    """``audiosr`` plus ``args``, quoted for a POSIX shell."""
    return shlex.join(["audiosr", *args])


def parse_command(args: list[str]) -> argparse.Namespace:
    """Parse ``args`` with the CLI's own parser (the same defaults and presets as the CLI)."""
    from .. import cli

    return cli._upsample_parser().parse_args(args)


def sampling_options(args: argparse.Namespace) -> SamplingOptions:
    """The diffusion engine's options for parsed CLI ``args`` (preset, steps, seed, ...)."""
    from .. import cli

    return cli._sampling_options(args)


def pipeline_options(args: argparse.Namespace) -> PipelineOptions:
    """The pipeline's options for parsed CLI ``args``, as ``audiosr`` builds them."""
    from .. import cli

    return PipelineOptions(
        cutoff_hz=args.cutoff,
        prefilter=not args.no_prefilter,
        force=args.force,
        keep_loudness=not args.normalize,
        batch_size=args.batch_size if args.batch_size is not None else cli.BATCH_SIZE,
    )
