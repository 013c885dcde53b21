"""The results manifest of a ``--ray`` run: one JSON line per input, in input order.

Each line holds ``input``, ``output``, ``status`` (``processed``, ``skipped`` or ``failed``),
``band_limit_hz`` (the band limit the pipeline used, Hz), ``duration_s`` (of the output),
``seconds`` (wall time from the file's start on its worker to its output being in place; files
batched together share their engine call), and ``error`` (one line, "" when none). Unknown
values are ``null``. Read it with ``pandas.read_json(path, lines=True)`` or any JSONL reader.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MANIFEST_NAME = "audiosr_manifest.jsonl"


def write_manifest(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            for row in rows:
                f.write(json.dumps(row, allow_nan=False) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a normal file's mode, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a manifest file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
