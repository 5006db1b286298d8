"""Locks that let state be saved while requests go on.

:class:`ReadWriteLock`: many readers at once, or one writer.

The snapshot backend holds a service's lock for reading while a request to
that service runs, and for writing while it saves or loads that service: a save
waits for requests in flight, requests wait for the save, and other services
are not affected.  Writers are preferred, so a stream of requests cannot starve
a save.

:class:`MutationGate`: the record-and-replay backend's checkpoints wait, behind
it, until no state-changing call is between the emulator and the log.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import QuiesceTimeoutError

__all__ = ["LockTable", "MutationGate", "ReadWriteLock"]


L = TypeVar("L")


class LockTable(Generic[L]):
    """One lock per name (a service), made by ``factory`` on first use; safe to ask from any thread."""

    def __init__(self, factory: Callable[[], L]) -> None:
        self._factory = factory
        self._locks: dict[str, L] = {}
        self._guard = threading.Lock()

    def __getitem__(self, name: str) -> L:
        lock = self._locks.get(name)
        if lock is None:
            with self._guard:
                lock = self._locks.get(name)
                if lock is None:
                    lock = self._locks[name] = self._factory()
        return lock


class ReadWriteLock:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writer and not self._waiting_writers)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._condition:
            self._waiting_writers += 1
            self._condition.wait_for(lambda: not self._writer and not self._readers)
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


class MutationGate:
    """Lets state-changing calls run side by side, and holds them back while state is captured.

    The recording middleware brackets each mutating call with :meth:`enter` and
    :meth:`leave`, from before the emulator sees it until its entry is in the
    log.  :meth:`quiesced` waits until none is in flight, holds new ones at the
    gate, and lets them go when its block ends: inside it, the emulator's state
    is exactly what the log holds, no more and no less.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._active = 0
        self._closed = False

    def enter(self) -> None:
        with self._condition:
            while self._closed:
                self._condition.wait()
            self._active += 1

    def leave(self) -> None:
        with self._condition:
            self._active -= 1
            if not self._active and self._closed:
                self._condition.notify_all()

    @contextlib.contextmanager
    def quiesced(self, timeout: float) -> Iterator[None]:
        """No mutating call in flight inside the block; new ones wait for its end.

        :raises QuiesceTimeoutError: calls were still in flight after ``timeout`` seconds
            (the gate is open again; try later).
        """
        with self._condition:
            if self._closed:
                raise RuntimeError("MutationGate.quiesced does not nest")
            self._closed = True
            if not self._condition.wait_for(lambda: not self._active, timeout):
                self._closed = False
                self._condition.notify_all()
                raise QuiesceTimeoutError(f"{self._active} state-changing calls still in flight after {timeout:.1f} s")
        try:
            yield
        finally:
            with self._condition:
                self._closed = False
                self._condition.notify_all()
