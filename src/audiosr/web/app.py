"""The Gradio page: upload or record, hear and see before/after, download.

:func:`build_app` returns the :class:`gradio.Blocks` (to launch, mount or host elsewhere);
:func:`launch` serves it the way ``audiosr web`` does. The processing function is the named
endpoint ``/upsample``; every input after the audio has a default, so
``Client(url).predict(handle_file("x.wav"), api_name="/upsample")`` works.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engines.base import Engine
from ..errors import AudioSRError
from .jobs import JobResult, describe_input, run_job
from .models import JobCancelled, ModelCache, ModelKey, release_free_memory
from .settings import BAND_LIMIT_MODES, ENGINES, PAGE_PRESETS, SEED_MAX, Request, WebOptions

log = logging.getLogger(__name__)

REPO_EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a"}
WORK_FOLDER = "audiosr-web"  # job folders, inside Gradio's cache folder
ENGINE_HELP = {
    "audiosr": "the diffusion model (official weights; slow on CPU)",
    "dsp": "fast signal processing, no weights",
    "sinc": "plain resampling, no new band (for comparison)",
}
CSS = """
#audiosr-info code { white-space: pre-wrap; word-break: break-all; }
"""


def _import_gradio() -> Any:
    try:
        import gradio
    except ImportError:
        raise AudioSRError("the web page needs Gradio: pip install 'audiosr-forge[web]'") from None
    return gradio


def find_examples(folder: str | Path | None) -> list[str]:
    """Audio files of the examples folder (the repository's ``examples/`` by default)."""
    root = Path(folder) if folder is not None else REPO_EXAMPLES
    if not root.is_dir():
        return []
    return [str(p) for p in sorted(root.iterdir()) if p.suffix.lower() in EXAMPLE_SUFFIXES]


def engine_status(models: ModelCache, web: WebOptions, engine: str, model: str) -> str:
    """One line under the engine choice: what it needs, and why it failed if it did."""
    if engine != "audiosr":
        return f"`{engine}`: {ENGINE_HELP.get(engine, '')}; ready."
    key = models.key(engine, model)
    reason = models.failure(key)
    if reason is not None:
        return f"⚠️ `audiosr` is unavailable: {reason}. The `dsp` and `sinc` engines work."
    if models.is_loaded(key):
        return f"`audiosr` ({model}): loaded."
    source = f"checkpoint {model}" if web.checkpoint else f"the official {model!r} weights"
    return (
        f"`audiosr` ({model}): {ENGINE_HELP['audiosr']}; loads {source} on first use "
        "(downloaded once if not cached)."
    )


def build_app(
    options: WebOptions | None = None,
    *,
    loader: Callable[[ModelKey], Engine] | None = None,
    preload: bool = False,
) -> Any:
    """Build the page.

    Args:
        options: server settings (defaults: :class:`WebOptions`).
        loader: builds an engine for a :class:`~audiosr.web.models.ModelKey` (default:
            :func:`audiosr.make_engine`); tests pass stand-ins.
        preload: load the default engine in the background now, so the first click does not
            wait for it (and a missing-weights message shows from the start).

    Returns:
        A ``gradio.Blocks``, queued with at most ``jobs_per_model`` jobs per loaded model.
    """
    gr = _import_gradio()
    web = options or WebOptions()
    models = ModelCache(web, loader)
    if preload:
        key = models.key(web.engine, web.default_model)
        threading.Thread(target=_preload, args=(models, key), daemon=True).start()
    keep = web.keep_results_s
    with gr.Blocks(
        title="AudioSR: audio super-resolution",
        analytics_enabled=False,
        delete_cache=(max(1, min(600, keep // 2)), keep),
    ) as app:
        upload_root = Path(app.GRADIO_CACHE)
        work_root = upload_root / WORK_FOLDER
        gr.Markdown(
            "## AudioSR: audio super-resolution to 48 kHz\n"
            "Upload or record audio (any rate, 1-8 channels, up to "
            f"{web.max_duration_s:g} s and {web.max_upload_mb:g} MB): the missing high band "
            "is generated, everything the input already has is kept."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                audio = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="input",
                    elem_id="audiosr-input",
                )
                input_info = gr.Markdown("", elem_id="audiosr-input-info")
                examples = find_examples(web.examples_dir)
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[audio], label="examples")
                with gr.Row():
                    engine = gr.Radio(
                        list(ENGINES), value=web.engine, label="engine", elem_id="audiosr-engine"
                    )
                    model = gr.Radio(
                        list(web.model_choices),
                        value=web.default_model,
                        label="model",
                        visible=web.engine == "audiosr",
                        elem_id="audiosr-model",
                    )
                status = gr.Markdown(
                    engine_status(models, web, web.engine, web.default_model),
                    elem_id="audiosr-engine-status",
                )
                with gr.Accordion("advanced settings", open=False):
                    with gr.Row():
                        preset = gr.Radio(list(PAGE_PRESETS), value="quality", label="preset")
                        steps = gr.Slider(0, 200, value=0, step=1, label="steps (0: the preset's)")
                        guidance = gr.Slider(0, 10, value=3.5, step=0.1, label="guidance")
                    with gr.Row():
                        seed = gr.Number(42, precision=0, minimum=0, maximum=SEED_MAX, label="seed")
                        random_seed = gr.Checkbox(False, label="random seed (reported)")
                    with gr.Row():
                        band_limit = gr.Radio(
                            list(BAND_LIMIT_MODES), value="auto", label="band limit"
                        )
                        cutoff_hz = gr.Number(
                            None, minimum=1000, maximum=24000, label="manual band limit (Hz)"
                        )
                    with gr.Row():
                        prefilter = gr.Checkbox(True, label="pre-filter at the band limit")
                        keep_loudness = gr.Checkbox(True, label="keep loudness")
                with gr.Row():
                    run = gr.Button(
                        "Upsample to 48 kHz", variant="primary", scale=3, elem_id="audiosr-run"
                    )
                    cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="audiosr-cancel")
            with gr.Column(scale=1):
                with gr.Row():
                    input48 = gr.Audio(
                        type="filepath",
                        label="input at 48 kHz",
                        interactive=False,
                        elem_id="audiosr-input48",
                    )
                    output = gr.Audio(
                        type="filepath",
                        label="output (48 kHz)",
                        interactive=False,
                        elem_id="audiosr-output",
                    )
                picture = gr.Image(
                    type="filepath",
                    format="png",
                    label="spectrograms: input vs output",
                    show_label=False,
                    interactive=False,
                    elem_id="audiosr-spectrogram",
                )
                download = gr.File(
                    label="48 kHz WAV", interactive=False, elem_id="audiosr-download"
                )
                info = gr.Markdown("", label="info", elem_id="audiosr-info")
                with gr.Accordion("details (JSON)", open=False):
                    details = gr.JSON(label="details")

        def describe(path: str | None) -> tuple[str, Any]:
            if not path:
                return "", gr.update()
            try:
                summary = describe_input(path, web, upload_root)
            except AudioSRError as exc:
                return f"⚠️ {exc}", gr.update()
            except Exception as exc:  # never a traceback on the page
                log.exception("describing %s failed", Path(path).name)
                return f"⚠️ could not read {Path(path).name}: {type(exc).__name__}", gr.update()
            return summary.markdown(), gr.update(value=round(summary.band_limit_hz))

        async def upsample(
            audio: str | None,
            engine: str = web.engine,
            model: str = web.default_model,
            preset: str = "quality",
            steps: float = 0,
            guidance: float = 3.5,
            seed: float = 42,
            random_seed: bool = False,
            band_limit: str = "auto",
            cutoff_hz: float | None = None,
            prefilter: bool = True,
            keep_loudness: bool = True,
            progress: Any = gr.Progress(track_tqdm=True),  # noqa: B008 - how Gradio finds it
        ) -> tuple[str, str, str, str, str, dict[str, object]]:
            """Super-resolve one file to 48 kHz.

            Returns (output WAV, the same file to download, the input at 48 kHz
            level-matched, the spectrogram PNG, the info panel, details as JSON).
            """
            if not audio:
                raise gr.Error("upload or record a file first", print_exception=False)
            try:
                request = Request(
                    engine=str(engine),
                    model=str(model or web.default_model),
                    preset=str(preset),
                    steps=int(steps or 0),
                    guidance=float(guidance),
                    seed=int(seed if seed is not None else 42),
                    random_seed=bool(random_seed),
                    band_limit=str(band_limit),
                    cutoff_hz=float(cutoff_hz) if cutoff_hz not in (None, "") else None,
                    prefilter=bool(prefilter),
                    keep_loudness=bool(keep_loudness),
                )
                request.check(web)  # before a worker is picked by the engine and model names
            except (TypeError, ValueError) as exc:
                raise gr.Error(f"bad setting: {exc}", print_exception=False) from None
            except AudioSRError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            cancelled = threading.Event()
            bars: list[Any] = []

            def report(done: int | None, total: int | None, what: str) -> None:
                # Segments go on a tqdm bar, which gr.Progress(track_tqdm=True) shows above
                # the sampler's own step bar (segments x steps for the diffusion engine).
                if total:
                    if not bars:
                        from tqdm import tqdm

                        bars.append(tqdm(total=total, desc=what, unit="segments"))
                    bars[0].update((done or 0) - bars[0].n)
                else:
                    progress(0.0, desc=what)

            def job() -> JobResult:
                try:
                    return run_job(
                        audio, request, web, models, work_root, upload_root, report,
                        cancelled.is_set,
                    )  # fmt: skip
                finally:
                    for bar in bars:
                        bar.close()
                    release_free_memory()

            key = models.key(request.engine, request.model)
            if models.busy(key):
                report(None, None, f"waiting for {key.label()} (busy)")
            context = contextvars.copy_context()  # gr.Progress reaches the worker through it
            future = models.workers(key).submit(context.run, job)
            try:
                result = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                # Not started yet: it never will; running: it stops at its next progress point.
                cancelled.set()
                future.cancel()
                raise
            except JobCancelled as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            except AudioSRError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            except Exception as exc:
                log.exception("job on %s failed", Path(audio).name)
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise gr.Error(
                    f"internal error: {type(exc).__name__}: {first}", print_exception=False
                ) from None
            out = str(result.output_wav)
            return (
                out,
                out,
                str(result.input_wav),
                str(result.picture),
                result.markdown(),
                result.details(),
            )

        def show_engine(engine_name: str, model_name: str) -> tuple[Any, Any, str]:
            diffusion = engine_name == "audiosr"
            return (
                gr.update(visible=diffusion),
                gr.update(),
                engine_status(models, web, engine_name, model_name),
            )

        audio.change(
            describe, inputs=[audio], outputs=[input_info, cutoff_hz], api_visibility="private"
        )
        engine.change(
            show_engine,
            inputs=[engine, model],
            outputs=[model, preset, status],
            api_visibility="private",
        )
        model.change(
            lambda e, m: engine_status(models, web, e, m),
            inputs=[engine, model],
            outputs=[status],
            api_visibility="private",
        )
        event = run.click(
            upsample,
            inputs=[
                audio,
                engine,
                model,
                preset,
                steps,
                guidance,
                seed,
                random_seed,
                band_limit,
                cutoff_hz,
                prefilter,
                keep_loudness,
            ],
            outputs=[output, download, input48, picture, info, details],
            api_name="upsample",
            show_progress_on=[picture],
            concurrency_limit=web.jobs_per_model * (len(web.model_choices) + 2),
            concurrency_id="upsample",
        )
        event.then(
            lambda e, m: engine_status(models, web, e, m),
            inputs=[engine, model],
            outputs=[status],
            api_visibility="private",
        )
        cancel.click(fn=None, cancels=[event])
        app.load(
            lambda e, m: engine_status(models, web, e, m),
            inputs=[engine, model],
            outputs=[status],
            api_visibility="private",
        )
    return app


def _preload(models: ModelCache, key: ModelKey) -> None:
    try:
        models.get(key)
    except AudioSRError as exc:
        log.warning("%s is unavailable: %s", key.label(), exc)


def launch(
    options: WebOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    preload: bool = True,
    block: bool = True,
) -> Any:
    """Build the page and serve it (what ``audiosr web`` does).

    Args:
        options: server settings.
        host: interface to listen on (``0.0.0.0`` for every interface).
        port: TCP port.
        share: also open a public ``*.gradio.live`` link (Gradio's tunnel).
        preload: load the default engine at start-up.
        block: wait until the server is stopped (False: return the running app).

    Returns:
        The running ``gradio.Blocks`` (when ``block`` is False).
    """
    web = options or WebOptions()
    app = build_app(web, preload=preload)
    app.queue(default_concurrency_limit=web.jobs_per_model)
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=web.max_upload_bytes,
        prevent_thread_lock=not block,
        quiet=not block,
        css=CSS,
        show_error=True,
        # Gradio's run history keeps results in the browser (or a Hugging Face bucket) after
        # the server has deleted them; off: nothing leaves the server, and nothing stale.
        run_history=False,
    )
    return app
