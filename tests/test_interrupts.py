"""Ctrl-C and SIGTERM wait for the end of the lines that must run whole
(``util/interrupts.py``), so that no job handed to a worker and no commit is lost track of
(the end-to-end check is ``test_signals.py``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from magsync.errors import Terminated
from magsync.util.interrupts import critical, install


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in this thread at the next instruction or so


def test_a_sigterm_inside_critical_lines_is_raised_once_they_are_done(handlers: None
                                                                      ) -> None:
    install(Terminated)
    done: list[str] = []
    with pytest.raises(Terminated):
        with critical():
            _signal_self(signal.SIGTERM)
            done.append("the rest of the block")
        done.append("after the block")
    assert done == ["the rest of the block"]
    _signal_self(signal.SIGTERM)  # a second SIGTERM is ignored


def test_ctrl_c_outside_critical_lines_stops_at_once_and_nested_lines_wait_for_the_outermost(
        handlers: None) -> None:
    install(Terminated)
    with pytest.raises(KeyboardInterrupt):
        _signal_self(signal.SIGINT)
    done: list[str] = []
    with pytest.raises(KeyboardInterrupt), critical():
        with critical():
            _signal_self(signal.SIGINT)
        done.append("outer")
    assert done == ["outer"]


def test_an_ignored_sigint_stays_ignored(handlers: None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    install(Terminated)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
