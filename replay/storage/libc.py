"""The few C library functions Python does not wrap (``malloc_trim``, ``prctl``, ``madvise``), looked up once."""

from __future__ import annotations

import functools
import sys
from typing import Any

__all__ = ["libc_function"]


@functools.cache
def libc_function(name: str) -> Any:
    """The C library's function ``name`` on Linux (``errno`` kept for ``ctypes.get_errno``), else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
