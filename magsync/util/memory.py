"""Keeping a long run's memory flat.

glibc gives each thread that allocates its own malloc arena (up to 8 per core); with a
reader pool and a writer pool, freed memory then stays spread over many arenas and the
process's RSS creeps up although Python's heap is flat. Python threads take turns under
the GIL anyway, so one arena costs nothing measurable and keeps RSS steady.
"""

from __future__ import annotations

import ctypes
import gc
import os

M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (unless MALLOC_ARENA_MAX is set); False off glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        return False
    try:
        mallopt = libc.mallopt
    except AttributeError:  # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def _glibc() -> ctypes.CDLL | None:
    """glibc by its usual name; ``find_library`` (which runs ``ldconfig``, ~10 ms of
    every run's start-up) only where that name is not found."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        pass
    from ctypes.util import find_library  # only here: it imports subprocess and shutil

    name = find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


# The cyclic collector's young generation: a send pipeline holds thousands of fresh
# containers at once (decoded pages, contacts, jobs in flight), so at CPython's default
# of 700 it ran collections over them all the time (an eighth of an export's CPU), to
# find nearly nothing: what magsync builds is freed by reference counting.
GC_YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """Fewer cyclic collections: the objects alive after start-up (modules, classes,
    config) are frozen out of them, and the young generation is larger."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
