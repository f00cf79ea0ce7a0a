"""Keeping a long run's memory flat.

glibc gives each thread that allocates its own malloc arena (up to 8 per core); with a
reader pool and a writer pool, freed memory then stays spread over many arenas and the
process's RSS creeps up although Python's heap is flat. Python threads take turns under
the GIL anyway, so one arena costs nothing measurable and keeps RSS steady.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (unless MALLOC_ARENA_MAX is set); False off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:  # the process's own symbols hold libc's: no ldconfig run to find it by name
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
