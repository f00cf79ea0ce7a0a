"""Ctrl-C and SIGTERM held back while a few lines must run whole.

Python raises ``KeyboardInterrupt`` (or, with magsync's SIGTERM handler, ``Terminated``)
wherever the main thread happens to be; right after a request was handed to a worker, or
after SQLite committed but before magsync noted it, that loses track of work Emarsys
already has. ``critical()`` marks such lines: a signal that arrives inside is raised as
soon as the outermost ``critical()`` ends. ``install()`` puts the handlers in place (the
CLI's ``main``); without it ``critical()`` changes nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_pending: list[BaseException] = []
_depth = [0]  # of critical() in the main thread (the one signal handlers run in)


def install(sigterm: Callable[[], BaseException]) -> None:
    """Handle SIGTERM (raising ``sigterm()`` once; a second one is ignored) and SIGINT
    (``KeyboardInterrupt``; left alone when it is ignored, as in a background job)."""
    seen: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        if not seen:
            seen.append(signum)
            _deliver(sigterm())

    def on_int(signum: int, frame: FrameType | None) -> None:
        _deliver(KeyboardInterrupt())

    signal.signal(signal.SIGTERM, on_term)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)


def _deliver(exc: BaseException) -> None:
    if _depth[0] and not _pending:
        _pending.append(exc)  # raised when the critical lines are done
        return
    if _depth[0]:
        return  # one stop is enough
    raise exc


@contextmanager
def critical() -> Iterator[None]:
    """Run the block whole: Ctrl-C or SIGTERM arriving inside is raised at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if not _depth[0] and _pending:
            raise _pending.pop()
