"""Bounded read-ahead: producers run in worker threads, the caller consumes a queue.

The queue holds at most ``depth`` items, so a slow consumer (the Emarsys side) holds
back the readers instead of letting pages pile up in memory. An error in any worker
stops the others and is raised in the consumer; a consumer that stops early (break,
exception, ``close()``) stops the workers too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
_POLL = 0.05  # how often a blocked worker looks at the stop flag


class _Done:
    """A worker ran out of producers."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _FanIn(Generic[T]):
    def __init__(self, producers: Sequence[Callable[[], Iterable[T]]], workers: int,
                 depth: int) -> None:
        self.todo: queue.SimpleQueue[Callable[[], Iterable[T]]] = queue.SimpleQueue()
        for p in producers:
            self.todo.put(p)
        self.out: queue.Queue[T | _Done | _Failed] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.work, name=f"magento-read-{i}",
                                         daemon=True) for i in range(max(1, workers))]
        self.started = False

    def work(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    producer = self.todo.get_nowait()
                except queue.Empty:
                    break
                for item in producer():
                    if not self.put(item):
                        return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.put(_Failed(exc))
            return
        self.put(_Done())

    def put(self, item: T | _Done | _Failed) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def start(self) -> None:
        """Start the workers (once): ``consume`` does on its first item."""
        if not self.started:
            self.started = True
            for t in self.threads:
                t.start()

    def consume(self) -> Generator[T, None, None]:
        self.start()
        running = len(self.threads)
        try:
            while running:
                item = self.out.get()
                if isinstance(item, _Done):
                    running -= 1
                elif isinstance(item, _Failed):
                    raise item.exc
                else:
                    yield item
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(timeout=5)


def fan_in(producers: Sequence[Callable[[], Iterable[T]]], *, workers: int = 1,
           depth: int = 1) -> Generator[T, None, None]:
    """Items of every producer, read ahead by ``workers`` threads through a queue of
    ``depth`` items; each producer's own items keep their order. ``close()`` it (or
    exhaust it) to stop the threads."""
    return _FanIn(producers, workers, depth).consume()


class ReadAhead(Generic[T]):
    """``fan_in`` whose workers start reading at once, before anyone iterates (e.g.
    while the other side's start-up requests are under way). ``close()`` stops them,
    whether or not the items were consumed."""

    def __init__(self, producers: Sequence[Callable[[], Iterable[T]]], *, workers: int = 1,
                 depth: int = 1) -> None:
        self._fan = _FanIn(producers, workers, depth)
        self._fan.start()
        self._items = self._fan.consume()

    def __iter__(self) -> Generator[T, None, None]:
        return self._items

    def close(self) -> None:
        self._fan.stop.set()
        self._items.close()
        for t in self._fan.threads:
            t.join(timeout=5)
