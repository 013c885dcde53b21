"""Per-run journal on the output file system: what each input's last attempt did.

A Ray actor that dies (killed, out of memory, node lost) is restarted and its batch is run
again. The journal makes that retry exact:

* a file finished before the crash has a ``<index>.done`` record (its result row, written
  atomically after the output was renamed into place): the retry returns that row and does
  not write the output a second time;
* every start of work on a file appends one byte to ``<index>.try``; a file whose work began
  ``max_tries`` times without finishing took its worker down each time (a file that needs more
  memory than the worker has, a decoder that crashes) and is failed without another try, so it
  fails alone instead of taking the run down.

The journal lives in a hidden folder of the output folder (the shared file system on a
cluster) and is deleted when the run has written its manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

JOURNAL_DIR = ".audiosr-ray"


class Journal:
    """Records of one run, keyed by the input's index in the run's file list.

    Args:
        folder: the run's journal folder (created by the driver, shared by every worker).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def done(self, index: int) -> dict[str, Any] | None:
        """The result row of a file an earlier attempt finished, else None."""
        try:
            return json.loads((self.folder / f"{index}.done").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def record_done(self, index: int, row: dict[str, Any]) -> None:
        """Store ``row`` as the file's final result (atomic: a crash leaves no partial row)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{index}.", suffix=".tmp", dir=self.folder)
        with os.fdopen(fd, "w") as f:
            json.dump(row, f)
        os.replace(tmp, self.folder / f"{index}.done")

    def tries(self, index: int) -> int:
        """How many times work on the file began without finishing."""
        try:
            return (self.folder / f"{index}.try").stat().st_size
        except FileNotFoundError:
            return 0

    def begin(self, index: int) -> int:
        """Count one more start of work on the file; returns the new count."""
        with open(self.folder / f"{index}.try", "ab") as f:
            f.write(b".")
            f.flush()
            os.fsync(f.fileno())
        return self.tries(index)
