"""Resolve, verify and load AudioSR weights, strictly and without executing pickled code.

The official files are ``pytorch_model.bin`` in the Hugging Face repos ``haoheliu/audiosr_basic``
and ``haoheliu/audiosr_speech``: a pickle whose ``"state_dict"`` holds 3,743 tensors (6.18 GB), of
which inference needs about 2.7 GB (spec §10). We open it with
``torch.load(weights_only=True, mmap=True)`` so only the tensors we keep are ever read from disk,
check every needed key and shape, and fail with the missing keys named. ``convert_checkpoint``
writes just those tensors to a safetensors file that loads in a fraction of the time.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from .config import AudioSRConfig
from .errors import CheckpointError

log = logging.getLogger(__name__)

HF_REPOS: dict[str, str] = {
    "basic": "haoheliu/audiosr_basic",
    "speech": "haoheliu/audiosr_speech",
}
CHECKPOINT_FILENAME = "pytorch_model.bin"
# Seconds the hub client may wait on the network before we give up and tell the user.
HUB_TIMEOUT_S = 5.0


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """Return a local path for a model name (``basic``/``speech``) or a checkpoint path.

    Order: an existing path; ``$AUDIOSR_CHECKPOINT_<NAME>``; the Hugging Face cache; a download
    through ``huggingface_hub`` (which honours ``HF_HUB_OFFLINE=1`` and ``HF_HOME``).

    Raises:
        CheckpointError: unknown name, a missing path, or weights that cannot be obtained.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            raise CheckpointError(f"checkpoint path is a directory, not a file: {path}")
        return path
    if text not in HF_REPOS:
        if any(sep in text for sep in ("/", "\\")) or path.suffix:
            raise CheckpointError(f"checkpoint file not found: {path}")
        raise CheckpointError(
            f"unknown model name {text!r}: choose one of {', '.join(sorted(HF_REPOS))} "
            "or give a checkpoint path"
        )
    env = os.environ.get(f"AUDIOSR_CHECKPOINT_{text.upper()}")
    if env:
        return resolve_checkpoint(env)
    return _download(HF_REPOS[text], text)


def download_hint(repo_id: str, name: str) -> str:
    """What to do when the weights are not cached and cannot be fetched (one line)."""
    return (
        f"the {name!r} weights ({repo_id}/{CHECKPOINT_FILENAME}, 6.2 GB) are not cached and "
        "the Hugging Face Hub cannot be reached; where it can, run "
        f"'hf download {repo_id} {CHECKPOINT_FILENAME}' (fills the cache; or pass the file "
        "with --checkpoint PATH), or use --engine dsp, which needs no weights"
    )


def _download(repo_id: str, name: str) -> Path:
    """Fetch ``pytorch_model.bin`` from the hub cache or network, failing fast and clearly.

    Without network, ``hf_hub_download`` retries its first request five times with growing
    pauses (27 s in all). One metadata request without retries (at most
    :data:`HUB_TIMEOUT_S` seconds) tells first whether the hub answers at all.
    """
    try:
        from huggingface_hub import (
            get_hf_file_metadata,
            hf_hub_download,
            hf_hub_url,
            try_to_load_from_cache,
        )
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        raise CheckpointError(
            "huggingface_hub is not installed: pip install huggingface_hub"
        ) from None
    cached = try_to_load_from_cache(repo_id, CHECKPOINT_FILENAME)
    if isinstance(cached, str) and Path(cached).is_file():
        return Path(cached)
    hint = download_hint(repo_id, name)
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise CheckpointError(hint + " (HF_HUB_OFFLINE is set)")
    url = hf_hub_url(repo_id, CHECKPOINT_FILENAME)
    failure = _probe(lambda: get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S), HUB_TIMEOUT_S)
    if failure is not None:
        raise CheckpointError(f"{hint} ({failure})")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(HUB_TIMEOUT_S)))
    log.info("downloading %s/%s (first use only)", repo_id, CHECKPOINT_FILENAME)
    try:
        return Path(hf_hub_download(repo_id, CHECKPOINT_FILENAME))
    except Exception as exc:  # network errors come in many types; all mean the same here
        raise CheckpointError(f"{hint} ({_reason(exc)})") from None


def _probe(request: Callable[[], object], timeout_s: float) -> str | None:
    """Run ``request`` (one hub request) for at most about ``timeout_s`` seconds.

    The request's own timeout covers connecting and reading, not name resolution: a resolver
    that hangs (no route to its DNS server) would block ``getaddrinfo`` for tens of seconds.
    The request runs in a daemon thread, and a thread still waiting after ``timeout_s + 1`` s
    counts as "the hub cannot be reached" (it is left to finish on its own).

    Returns:
        None when the request succeeded, else the reason it did not, in one line.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            request()
            outcome.append(None)
        except BaseException as exc:  # DNS, connection, timeout, proxy, HTTP: all mean "no"
            outcome.append(exc)

    worker = threading.Thread(target=run, name="audiosr-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout_s + 1.0)
    if not outcome:
        return f"no answer within {timeout_s + 1.0:.0f} s (name resolution or connection hangs)"
    exc = outcome[0]
    return None if exc is None else _reason(exc)


def _reason(exc: BaseException) -> str:
    """``Type: first line`` of an exception, at most 200 characters of message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _open_state_dict(path: Path) -> Mapping[str, Tensor]:
    """Open a checkpoint lazily: safetensors by name, torch zip files memory-mapped."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    if path.suffix.lower() == ".safetensors":
        return _SafetensorsView(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first or "Unsupported global" in str(exc):
            reason = "it contains pickled code, which is never executed"
        elif "zip" in first.lower() or "central directory" in first.lower() or "EOF" in first:
            reason = "it is truncated or not a PyTorch checkpoint"
        else:
            reason = first[:200]
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None
    except Exception as exc:  # torch raises assorted types for garbage input
        raise CheckpointError(
            f"cannot load checkpoint {path}: not a PyTorch checkpoint ({type(exc).__name__})"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return obj


class _SafetensorsView(Mapping[str, Tensor]):
    """Read-on-demand mapping over a safetensors file (only requested tensors are read)."""

    def __init__(self, path: Path) -> None:
        from safetensors import SafetensorError, safe_open

        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            self._keys = list(self._file.keys())
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load checkpoint {path}: {exc}") from None
        self.metadata = self._file.metadata() or {}

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def select_state_dict(
    source: Mapping[str, Tensor], expected: Mapping[str, torch.Size], origin: str = "checkpoint"
) -> dict[str, Tensor]:
    """Pick exactly the ``expected`` keys from ``source``, checking presence and shapes.

    Raises:
        CheckpointError: naming the missing keys (first few and the count) or shape mismatches.
    """
    missing = [k for k in expected if k not in source]
    if missing:
        prefixes = sorted({".".join(k.split(".")[:2]) for k in missing})
        raise CheckpointError(
            f"{origin} lacks {len(missing)} needed key(s), e.g. {', '.join(missing[:3])} "
            f"(under {', '.join(prefixes[:4])}); is it an AudioSR checkpoint for this config?"
        )
    out: dict[str, Tensor] = {}
    bad: list[str] = []
    for key, shape in expected.items():
        tensor = source[key]
        if tuple(tensor.shape) != tuple(shape):
            bad.append(f"{key} {tuple(tensor.shape)} != {tuple(shape)}")
        out[key] = tensor
    if bad:
        raise CheckpointError(
            f"{origin} does not fit the config: {len(bad)} shape mismatch(es), e.g. {bad[0]}; "
            "pass the matching --config"
        )
    return out


def load_model(
    config: AudioSRConfig,
    checkpoint: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    first_stage_encoder: bool = False,
):
    """Build :class:`AudioSRModel` on the meta device and fill it from a checkpoint.

    Only the tensors the model owns are read (memory stays near the size of what is kept).

    Args:
        config: architecture; must match the checkpoint's widths.
        checkpoint: model name (``basic``/``speech``) or path (``.bin``/``.pt``/``.ckpt`` or
            ``.safetensors``).
        device: where the weights end up.
        dtype: floating dtype of the weights (fp32 is the faithful default).
        first_stage_encoder: also load VAE#1's encoder (only needed to reproduce the original's
            discarded posterior, never for the output).

    Returns:
        The model in eval mode.
    """
    from .models.latent_diffusion import AudioSRModel

    path = resolve_checkpoint(checkpoint)
    with torch.device("meta"):
        model = AudioSRModel(config, first_stage_encoder=first_stage_encoder)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    source = _open_state_dict(path)
    tensors = select_state_dict(source, expected, origin=f"checkpoint {path.name}")
    device = torch.device(device)
    loaded = {}
    for key, tensor in tensors.items():
        target_dtype = dtype if tensor.is_floating_point() and tensor.dim() > 0 else tensor.dtype
        # On the CPU at the file's dtype this is no copy: the parameter stays a copy-on-write
        # view of the memory-mapped file, so only the pages inference touches are ever read.
        loaded[key] = tensor.to(device=device, dtype=target_dtype)
    model.load_state_dict(loaded, strict=True, assign=True)
    _check_schedule(source, config, str(path))
    log.info("loaded %d tensors from %s", len(loaded), path)
    return model.eval()


def _check_schedule(source: Mapping[str, Tensor], config: AudioSRConfig, origin: str) -> None:
    """Warn when the checkpoint's schedule buffer differs from the one we recompute."""
    if "alphas_cumprod" not in source:
        return
    from .diffusion.schedule import make_cosine_schedule

    ours = make_cosine_schedule(config.diffusion).alphas_cumprod.float()
    theirs = source["alphas_cumprod"].float()
    if theirs.shape != ours.shape or not torch.allclose(theirs, ours, atol=1e-6):
        log.warning("%s: its alphas_cumprod differs from the cosine schedule we compute", origin)


def convert_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    config: AudioSRConfig | None = None,
    dtype: str = "fp32",
) -> Path:
    """Write the tensors inference needs to a safetensors file (fp32 or fp16).

    The result holds the same keys as the official file (so it loads with the same code) and the
    config in its metadata. Written atomically.
    """
    from safetensors.torch import save_file

    from .models.latent_diffusion import AudioSRModel

    if dtype not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"dtype must be fp32, fp16 or bf16, got {dtype!r}")
    config = config or AudioSRConfig()
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    path = resolve_checkpoint(src)
    with torch.device("meta"):
        model = AudioSRModel(config, first_stage_encoder=False)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    tensors = select_state_dict(_open_state_dict(path), expected, origin=f"checkpoint {path.name}")
    out = {
        k: (v.to(torch_dtype) if v.is_floating_point() and v.dim() > 0 else v).contiguous().clone()
        for k, v in tensors.items()
    }
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    from dataclasses import asdict

    from .audio_io import output_mode, remove_stale_temps, temp_prefix

    remove_stale_temps(dst)
    fd, name = tempfile.mkstemp(
        prefix=f"{temp_prefix(dst)}{os.getpid()}.", suffix=".part", dir=dst.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        save_file(
            out, str(tmp), metadata={"format": "pt", "audiosr_config": json.dumps(asdict(config))}
        )
        os.chmod(tmp, output_mode(dst))  # safetensors and mkstemp both create 0600 files
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %d tensors (%s) to %s", len(out), dtype, dst)
    return dst
