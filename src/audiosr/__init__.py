"""audiosr: fast, faithful AudioSR (versatile audio super-resolution to 48 kHz)."""

from __future__ import annotations

__version__ = "0.1.0"
