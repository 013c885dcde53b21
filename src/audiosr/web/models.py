"""Engines loaded once per server and shared by every request, with a job limit per engine.

A model (the diffusion weights, or a weightless dsp/sinc engine) is loaded on its first use
and kept; later requests with other sampling options (steps, seed, preset) reuse the same
weights through a shallow copy of the engine carrying their own options. At most
``jobs_per_model`` jobs run on one loaded model at a time; the others wait (and may be
cancelled while waiting).
"""

from __future__ import annotations

import copy
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from ..config import SamplingOptions
from ..engines.base import Engine
from ..errors import AudioSRError
from .settings import WebOptions

log = logging.getLogger(__name__)

# How often a job waiting for a busy model checks whether it was cancelled (seconds).
WAIT_POLL_S = 0.25
# A failed weight lookup (no network, no cache) is remembered this long before it is retried,
# so every click on a machine without the weights does not wait for the hub's time-out again.
RETRY_FAILED_LOAD_S = 60.0


class JobCancelled(AudioSRError):
    """The user cancelled the job (raised inside the worker at its next progress point)."""


@dataclass(frozen=True)
class ModelKey:
    """What identifies one loaded model: the engine and, for diffusion, the weights."""

    engine: str
    model: str = ""

    def label(self) -> str:
        return f"{self.engine} ({self.model})" if self.model else self.engine


def engine_with_options(engine: Engine, options: SamplingOptions) -> Engine:
    """``engine`` with other sampling options, sharing its weights (no copy of the model).

    Engines without sampling options (dsp, sinc) are returned as they are.
    """
    custom = getattr(engine, "with_options", None)
    if callable(custom):
        return custom(options)
    if not hasattr(engine, "options"):
        return engine
    clone = copy.copy(engine)
    clone.options = options
    return clone


def release_free_memory() -> None:
    """Give the allocator's free pages back to the system (glibc's ``malloc_trim``).

    A job frees tens of MB of audio buffers; glibc keeps such freed memory in its pools, so
    a long-running server's resident size would follow its largest past jobs. Elsewhere
    (macOS, Windows, musl) this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_engine(web: WebOptions, key: ModelKey) -> Engine:
    """Build the engine for ``key`` with the server's device and checkpoint settings.

    Raises:
        AudioSRError: e.g. the weights cannot be found or fetched (one line naming how to
            get them).
    """
    from ..api import make_engine

    if key.engine != "audiosr":
        return make_engine(key.engine)
    return make_engine(
        "audiosr",
        model=web.checkpoint or key.model,
        config=web.config,
        device=web.device,
        options=SamplingOptions(),
        progress=True,  # the sampler's step bar, which the page's progress bar tracks
    )


class ModelCache:
    """Loads each model once and hands it out to at most ``jobs_per_model`` jobs at a time.

    Thread-safe: requests run in worker threads.

    Args:
        web: the server's settings (device, checkpoint, jobs per model).
        loader: builds an engine for a key; default :func:`load_engine`.
    """

    def __init__(self, web: WebOptions, loader: Callable[[ModelKey], Engine] | None = None) -> None:
        self._web = web
        self._loader = loader or (lambda key: load_engine(web, key))
        self._lock = threading.Lock()
        self._engines: dict[ModelKey, Engine] = {}
        self._loading: dict[ModelKey, threading.Lock] = {}
        self._slots: dict[ModelKey, threading.BoundedSemaphore] = {}
        self._workers: dict[ModelKey, ThreadPoolExecutor] = {}
        self._running: dict[ModelKey, int] = {}
        self._failed: dict[ModelKey, tuple[float, str]] = {}
        self.loads = 0  # models loaded so far (for tests and the log)

    def key(self, engine: str, model: str) -> ModelKey:
        return ModelKey(engine, model if engine == "audiosr" else "")

    def workers(self, key: ModelKey) -> ThreadPoolExecutor:
        """The model's own ``jobs_per_model`` worker threads; its jobs queue there.

        Running a model's jobs always on the same few threads (rather than on whichever
        thread of a shared pool is free) keeps the memory allocator's per-thread arenas,
        and so the server's resident memory, from growing with the number of requests.
        """
        with self._lock:
            if key not in self._workers:
                self._workers[key] = ThreadPoolExecutor(
                    self._web.jobs_per_model, thread_name_prefix=f"audiosr-{key.label()}"
                )
            return self._workers[key]

    def busy(self, key: ModelKey) -> bool:
        """Whether every job slot of the model is taken (a new job would wait)."""
        with self._lock:
            return self._running.get(key, 0) >= self._web.jobs_per_model

    def is_loaded(self, key: ModelKey) -> bool:
        with self._lock:
            return key in self._engines

    def failure(self, key: ModelKey) -> str | None:
        """The one-line reason the model could not be loaded lately, if it could not."""
        with self._lock:
            failed = self._failed.get(key)
        if failed is None or time.monotonic() - failed[0] > RETRY_FAILED_LOAD_S:
            return None
        return failed[1]

    def get(self, key: ModelKey) -> Engine:
        """The loaded engine for ``key``, loading it on first use (once, whoever asks).

        Raises:
            AudioSRError: the model cannot be loaded (e.g. missing weights); the reason is
                remembered for :data:`RETRY_FAILED_LOAD_S` seconds.
        """
        with self._lock:
            if key in self._engines:
                return self._engines[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # a second request for the same model waits for the first load
            with self._lock:
                if key in self._engines:
                    return self._engines[key]
            reason = self.failure(key)
            if reason is not None:
                raise AudioSRError(reason)
            start = time.perf_counter()
            try:
                engine = self._loader(key)
            except (AudioSRError, OSError, ValueError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                with self._lock:
                    self._failed[key] = (time.monotonic(), reason)
                raise AudioSRError(reason) from None
            log.info("loaded %s in %.1f s", key.label(), time.perf_counter() - start)
            with self._lock:
                self._engines[key] = engine
                self._failed.pop(key, None)
                self.loads += 1
            return engine

    @contextmanager
    def slot(
        self, key: ModelKey, cancelled: Callable[[], bool], waiting: Callable[[], None]
    ) -> Iterator[None]:
        """Hold one of the model's job slots for the ``with`` block.

        Args:
            key: the model.
            cancelled: polled while waiting; True gives up with :class:`JobCancelled`.
            waiting: called once if the job has to wait (to tell the user).
        """
        with self._lock:
            slots = self._slots.setdefault(
                key, threading.BoundedSemaphore(self._web.jobs_per_model)
            )
        if not slots.acquire(blocking=False):
            waiting()
            while not slots.acquire(timeout=WAIT_POLL_S):
                if cancelled():
                    raise JobCancelled("cancelled while waiting for the model")
        with self._lock:
            self._running[key] = self._running.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._running[key] -= 1
            slots.release()
