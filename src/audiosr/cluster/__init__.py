"""Batch processing on a Ray cluster (``audiosr ... --ray``); needs the ``[ray]`` extra.

Only :mod:`audiosr.cluster.driver` and :mod:`audiosr.cluster.worker` import Ray, and only
inside the functions that run it, so this package imports without Ray installed.
"""

from __future__ import annotations

from .driver import check_args, run_on_ray
from .manifest import MANIFEST_NAME, read_manifest

__all__ = ["MANIFEST_NAME", "check_args", "read_manifest", "run_on_ray"]
