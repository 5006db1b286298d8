"""Huge pages for the heap, so that a background save's ``fork`` has few page tables to copy.

``fork(2)`` copies the page tables of every resident page, and everything waits for it
(:mod:`replay.storage.bgsave`): with 4 KiB pages that is one entry per 4 KiB, about 5 ms for
200 MB here.  A transparent huge page maps 2 MiB with one entry, and the same fork takes
under 1 ms.  Linux backs a region with huge pages only where it is told to (the usual
``madvise`` setting of ``/sys/kernel/mm/transparent_hugepage/enabled``), so once each
background save's child is gone, a folder thread walks the process's dense private anonymous
regions (the ``malloc`` heap and its large blocks; not thread stacks, which are sparse), marks
them ``MADV_HUGEPAGE`` and folds their 4 KiB pages into huge ones with ``MADV_COLLAPSE``
(Linux 6.1+; older kernels leave it to ``khugepaged``): the pages the first save found, those
the state grew by, and those a save's copy-on-write split.  Nothing waits for a fold: it runs
between saves, mostly without the GIL, and a save that starts while one runs waits for it to
end before forking (:func:`quiet`), because folding a page the child shares would copy it.

It is asked for: ``REPLAY_HUGE_PAGES=on`` (the default is ``off``).  In benchmark (h), 51 MB
of state saved back to back, it halves the time a save holds the captured service (about
6-10 ms per 100 MB instead of 8-22) and brings the p99 of another service's calls during
snapshot saves from about 4x idle to 2.6-2.9x.  A save takes as long as before (149 against
151 ms), but the yardstick of (h), a plain ``pickle.dumps`` in the same process, gets faster
on a folded heap (104 against 123 ms), so the ratio (h) reports rises from 1.16-1.35x to
1.41-1.55x.  It does nothing where Linux offers no
transparent huge pages; :func:`describe` says which is in effect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError
from .libc import libc_function

__all__ = ["VARIABLE", "Folded", "describe", "enabled", "fold", "quiet"]

logger = logging.getLogger("replay.hugepages")

VARIABLE = "REPLAY_HUGE_PAGES"
_SETTINGS = ("on", "off")
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"
_HUGE = 2 << 20
_DENSE = 0.875  # a region is folded when at least this share of it is resident (stacks and sparse maps are not)
_LOOSE = 16 << 20  # ... and when at least this much of it is in small pages
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25


class _State:
    saving = 0  # saves between fork and their child's end: no fold may run
    folding = False
    wanted = False  # a save ended since the last fold
    thread: threading.Thread | None = None
    collapse = True  # False once the kernel said it does not know MADV_COLLAPSE


_state = _State()
_cond = threading.Condition()


@dataclasses.dataclass(frozen=True)
class Folded:
    """What one :func:`fold` did: regions and bytes advised, bytes now in huge pages, seconds it took."""

    regions: int
    advised: int
    huge: int
    seconds: float


def _setting() -> str:
    raw = os.environ.get(VARIABLE, "off")
    value = raw.strip().lower() or "off"
    if value not in _SETTINGS:
        raise ConfigError(VARIABLE, raw, _SETTINGS)
    return value


@functools.cache
def _madvise() -> Any:
    """libc's ``madvise`` where Linux offers transparent huge pages to those who ask, else ``None``."""
    madvise = libc_function("madvise")
    if madvise is None:
        return None
    try:
        with open(_THP, encoding="ascii") as handle:
            if "[never]" in handle.read():
                return None
    except OSError:
        return None
    import ctypes

    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def enabled() -> bool:
    """Are huge pages used here (``REPLAY_HUGE_PAGES=on``, and Linux offers them)?

    :raises ConfigError: ``REPLAY_HUGE_PAGES`` is neither ``on`` nor ``off``.
    """
    return _setting() == "on" and _madvise() is not None


def describe() -> str:
    """A few words for the start-up log: whether the heap is folded into huge pages between saves."""
    if _setting() == "off":
        return f"small pages ({VARIABLE}=off)"
    if _madvise() is None:
        return f"small pages ({VARIABLE}=on, but Linux offers no transparent huge pages here)"
    return f"the heap in huge pages between saves ({VARIABLE}=on)"


def _regions() -> list[tuple[int, int, int, int]]:
    """``(start, end, resident, huge)`` bytes of each private anonymous read-write region of this process."""
    regions: list[list[int]] = []
    current: list[int] | None = None
    with open("/proc/self/smaps", encoding="latin-1") as handle:
        for line in handle:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                fields = line.split()
                current = None
                if len(fields) >= 5 and fields[1] == "rw-p" and (len(fields) == 5 or fields[5] == "[heap]"):
                    start, end = (int(part, 16) for part in fields[0].split("-"))
                    current = [start, end, 0, 0]
                    regions.append(current)
            elif current is not None:
                if line.startswith("Rss:"):
                    current[2] = int(line.split()[1]) << 10
                elif line.startswith("AnonHugePages:"):
                    current[3] = int(line.split()[1]) << 10
    return [(start, end, resident, huge) for start, end, resident, huge in regions]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No fold runs inside this block (a save's fork and its child's life); one is due after it.

    Entering waits for a fold under way to end.
    """
    with _cond:
        while _state.folding:
            _cond.wait()
        _state.saving += 1
    try:
        yield
    finally:
        with _cond:
            _state.saving -= 1
            _state.wanted = enabled()
            _cond.notify_all()
        if _state.wanted:
            _start_folder()


def _start_folder() -> None:
    with _cond:
        if _state.thread is not None and _state.thread.is_alive():
            return
        _state.thread = threading.Thread(target=_folder, name="replay-hugepages", daemon=True)
        _state.thread.start()


def _folder() -> None:
    while True:
        with _cond:
            while not (_state.wanted and _state.saving == 0):
                _cond.wait()
            _state.wanted, _state.folding = False, True
        try:
            fold()
        except Exception:  # best effort: a fold that fails leaves small pages, nothing else
            logger.exception("folding the heap into huge pages failed")
        finally:
            with _cond:
                _state.folding = False
                _cond.notify_all()


def fold() -> Folded | None:
    """Fold the dense anonymous regions into huge pages now (``None`` when not :func:`enabled`).

    A region is folded when at least :data:`_LOOSE` bytes of it (or an eighth, if more) are in small
    pages.  Best effort: a region the kernel cannot fold now (no free huge page, pages pinned) stays
    as it is.
    """
    if not enabled():
        return None
    madvise = _madvise()
    started = time.perf_counter()
    advised = huge = count = 0
    try:
        regions = _regions()
    except OSError as exc:
        logger.debug("cannot read /proc/self/smaps: %s", exc)
        return None
    for start, end, resident, already in regions:
        low = (start + _HUGE - 1) & ~(_HUGE - 1)
        high = end & ~(_HUGE - 1)
        loose = resident - already
        if high - low < _HUGE or resident < _DENSE * (end - start) or loose < max(_LOOSE, resident >> 3):
            huge += already
            continue
        count += 1
        advised += high - low
        if madvise(low, high - low, _MADV_HUGEPAGE) != 0:
            huge += already
            continue
        collapsed = False
        if _state.collapse:
            collapsed = madvise(low, high - low, _MADV_COLLAPSE) == 0
            if not collapsed and _errno() == errno.EINVAL:
                _state.collapse = False  # before Linux 6.1: khugepaged folds them in its own time
        huge += high - low if collapsed else already
    folded = Folded(count, advised, huge, time.perf_counter() - started)
    logger.debug("folded %d region(s), %d MB, in %.1f ms", count, advised >> 20, folded.seconds * 1000)
    return folded


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()
