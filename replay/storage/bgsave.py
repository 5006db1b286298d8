"""Background saves: serialise a consistent image of the emulator in a forked child (Redis's ``BGSAVE``).

:func:`run_save` holds what it is given (a service's write lock, the mutation gate) only
for ``fork(2)``: the child gets a copy-on-write image of the whole process as it was at
that instant, pickles and writes it (temporary file, fsync, rename, directory fsync) and
reports back through a pipe, while the parent lets go and keeps serving.  The thread that
asked for the save waits for the child (blocked in ``read(2)``, without the GIL), so its
caller learns whether the save is durable exactly as it would inline.

Before the hold, freed heap memory is handed back to the system (glibc's ``malloc_trim``, which
runs without the GIL): ``fork`` copies the page tables of every resident page, so a fragmented
heap twice the size of the live one doubles the time everything waits for it.  With
``REPLAY_HUGE_PAGES=on`` the heap is kept in huge pages instead, folded between saves
(:mod:`replay.storage.hugepages`), and no fold runs from the fork to the child's end.  Around the fork
the garbage collector is tamed: ``gc.freeze()`` moves every existing
object out of the collector's reach, so a collection in the parent does not write to
(and copy) every page the child shares with it, and the child runs with the collector
off.  Both are undone when the child is gone.  A child that reported success is reaped
by a thread of its own: the caller's save is complete and durable then, and the
child's exit (unmapping its copy of the process, a few milliseconds for a large one)
does not delay it.

Where ``fork`` is not available (or ``REPLAY_BGSAVE=inline``), or fails (no memory for
the page tables), the work runs in the calling thread with the hold taken throughout:
correct, and as slow for other calls as saves used to be.  :func:`mode` says which is
used; the backends report it in their status.

The child never returns into the caller's code: it ends with ``os._exit``, so no
``atexit`` handler, buffered stream or ``finally`` of the parent's runs twice.  On Linux
it dies with the thread that forked it (``PR_SET_PDEATHSIG``), so a parent killed with
``SIGKILL`` leaves no child writing into a data dir a new server owns; it ignores
``SIGINT`` (a Ctrl-C in the terminal is the parent's to handle, and the parent waits for
its save).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import gc
import logging
import os
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from ..errors import BackgroundSaveError, ConfigError
from . import hugepages
from .libc import libc_function

T = TypeVar("T")

__all__ = ["MODE_VARIABLE", "Outcome", "SaveMode", "describe", "mode", "run_save"]

logger = logging.getLogger("replay.bgsave")

MODE_VARIABLE = "REPLAY_BGSAVE"
CHILD_TIMEOUT = 3600.0
"""Seconds a child may take before it is killed and its save reported failed."""

_PR_SET_PDEATHSIG = 1


class SaveMode(enum.Enum):
    """How snapshot saves and checkpoints serialise state."""

    FORK = "fork"  # in a forked child: other calls keep being served
    INLINE = "inline"  # in the calling thread, holding the service (or every state-changing call) throughout


def mode(environ: dict[str, str] | None = None) -> SaveMode:
    """The mode ``REPLAY_BGSAVE`` asks for; ``fork`` by default where the platform has it.

    :raises ConfigError: the variable has another value, or asks for ``fork`` where there is none.
    """
    value = (os.environ if environ is None else environ).get(MODE_VARIABLE, "").strip().lower()
    if not value:
        return SaveMode.FORK if hasattr(os, "fork") else SaveMode.INLINE
    try:
        chosen = SaveMode(value)
    except ValueError:
        raise ConfigError(MODE_VARIABLE, value, tuple(m.value for m in SaveMode)) from None
    if chosen is SaveMode.FORK and not hasattr(os, "fork"):
        raise ConfigError(MODE_VARIABLE, value, hint="this platform has no fork(2); use inline")
    return chosen


def describe(how: SaveMode) -> str:
    """One line for the start-up log: how saves will run."""
    if how is SaveMode.FORK:
        return f"saves run in a forked child (REPLAY_BGSAVE=fork): calls wait only for the fork; {hugepages.describe()}"
    return "saves run in-process (REPLAY_BGSAVE=inline): calls to the saved services wait while state is pickled"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a save's work returned (JSON-able), and how long the hold was held for it."""

    result: Any
    held: float
    forked: bool


_freeze_lock = threading.Lock()
_frozen = 0  # saves whose child is running: the collector is unfrozen when the last one ends


def _freeze() -> None:
    global _frozen
    with _freeze_lock:
        if _frozen == 0:
            gc.freeze()
        _frozen += 1


def _unfreeze() -> None:
    global _frozen
    with _freeze_lock:
        _frozen -= 1
        if _frozen == 0:
            gc.unfreeze()


def run_save(
    capture: Callable[[], T],
    write: Callable[[T], Any],
    hold: contextlib.AbstractContextManager[Any],
    how: SaveMode | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> Outcome:
    """``write(capture())`` on an image of the process taken while ``hold`` is held; what ``write`` returned.

    Forked, the child does both on its copy-on-write image and the hold lasts for the fork.
    Inline, ``capture`` (serialise to memory) runs under the hold and ``write`` (to disk) after it.
    ``write`` must return something ``orjson`` can encode (it crosses a pipe from the child).

    :raises BackgroundSaveError: the child failed (its error, in one line), died, or took longer than ``timeout``.
    :raises Exception: inline, whatever ``capture`` or ``write`` raised.
    """
    if (how if how is not None else mode()) is SaveMode.INLINE:
        return _inline(capture, write, hold)
    prctl = _prctl()
    parent = os.getpid()
    huge = hugepages.enabled()
    if not huge and (trim := _malloc_trim()) is not None:  # before the hold, without the GIL: fewer page tables
        trim(0)  # (with huge pages, trimming would split them: they are what keeps the tables few)
    gone = contextlib.ExitStack()  # what is undone once the child is gone
    _freeze()
    gone.callback(_unfreeze)
    try:
        if huge:
            gone.enter_context(hugepages.quiet())
        outcome, exiting = _forked(capture, write, hold, prctl, parent, timeout)
    except BaseException:
        gone.close()
        raise
    if exiting is None:
        gone.close()
    else:  # the save is done and durable: the child only has its memory to hand back, which takes milliseconds
        _reap_later(exiting, gone.close)
    return outcome


def _forked(
    capture: Callable[[], T],
    write: Callable[[T], Any],
    hold: contextlib.AbstractContextManager[Any],
    prctl: Any,
    parent: int,
    timeout: float,
) -> tuple[Outcome, int | None]:
    """Fork under ``hold``; in the child, ``write(capture())``; wait for its report.  Also the pid of a child
    that reported success and is still to be reaped (``None`` once it has been)."""
    with hold:
        started = time.perf_counter()
        read_fd, write_fd = os.pipe()
        try:
            with warnings.catch_warnings():  # Python 3.12 warns about fork in a threaded process: we own the child
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except (OSError, RuntimeError) as exc:  # RuntimeError: Python 3.12+ forbids fork at interpreter exit
            os.close(read_fd)
            os.close(write_fd)
            logger.warning("fork failed (%s): saving in-process, calls to the saved services wait", exc)
            return _inline(capture, write, contextlib.nullcontext(), started), None
        if pid == 0:
            _child(lambda: write(capture()), read_fd, write_fd, parent, prctl)  # never returns
        held = time.perf_counter() - started
    os.close(write_fd)
    try:
        report = _read_report(read_fd, pid, timeout)
    finally:
        os.close(read_fd)
    message = _message(report)
    if message is not None and message.get("ok") is True:  # whole: the child wrote it after the work was done
        return Outcome(message.get("result"), held, forked=True), pid
    _, status = os.waitpid(pid, 0)
    raise _failure(message, status)


def _reap_later(pid: int, then: Callable[[], None]) -> None:
    """Reap the child ``pid`` in a thread of its own, then call ``then``: its exit (unmapping its copy of the
    process) need not delay the caller, whose save is complete."""

    def reap() -> None:
        with contextlib.suppress(ChildProcessError):  # reaped by someone else (SIGCHLD set to SIG_IGN)
            os.waitpid(pid, 0)
        try:
            then()
        except Exception:  # e.g. no new thread for huge-page folds while the interpreter shuts down
            logger.debug("after reaping save child %d", pid, exc_info=True)

    threading.Thread(target=reap, name=f"replay-reap-{pid}", daemon=True).start()


def _inline(
    capture: Callable[[], T],
    write: Callable[[T], Any],
    hold: contextlib.AbstractContextManager[Any],
    started: float | None = None,
) -> Outcome:
    with hold:
        if started is None:
            started = time.perf_counter()
        _freeze()  # what capture allocates is collected young; the heap it walks is not traversed over and over
        try:
            image = capture()
        finally:
            _unfreeze()
        held = time.perf_counter() - started
    return Outcome(write(image), held, forked=False)


def _read_report(fd: int, pid: int, timeout: float) -> bytes:
    """Everything the child writes to the pipe, until it closes it (exits); it is killed past ``timeout``."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise BackgroundSaveError(f"the save's child process (pid {pid}) did not finish in {timeout:.0f} s")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _message(report: bytes) -> dict[str, Any] | None:
    """The child's report, if it is a whole one."""
    try:
        message = orjson.loads(report) if report else None
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def _failure(message: dict[str, Any] | None, status: int) -> BackgroundSaveError:
    """Why a child that did not report success failed: its error, else how it ended."""
    if message is not None and isinstance(message.get("error"), str):
        return BackgroundSaveError(message["error"])
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return BackgroundSaveError(f"the save's child process was killed by {name} before it finished")
    return BackgroundSaveError(f"the save's child process exited with status {os.waitstatus_to_exitcode(status)}")


def _child(work: Callable[[], Any], read_fd: int, write_fd: int, parent: int, prctl: Any) -> None:
    """In the forked child: do the work, report it, and leave without running anything of the parent's."""
    code = 70
    try:
        gc.disable()
        os.close(read_fd)
        if prctl is not None:  # Linux: be killed when the thread that forked us ends (a parent killed by SIGKILL)
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # it died before that took effect
                os._exit(72)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            report = orjson.dumps({"ok": True, "result": work()})
            code = 0
        except BaseException as exc:  # the parent raises it, in one line
            report = orjson.dumps({"ok": False, "error": " ".join(f"{exc}".split()) or type(exc).__name__})
            code = 1
        view = memoryview(report)
        while view:
            view = view[os.write(write_fd, view) :]
        os.close(write_fd)  # the parent has all of it now, without waiting for this process to be torn down
    except BaseException:  # nothing may escape into the parent's code
        code = 71
    finally:
        os._exit(code)


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (it hands freed heap pages back to the system), else ``None``."""
    return libc_function("malloc_trim")


def _prctl() -> Any:
    """libc's ``prctl`` on Linux (looked up in the parent: nothing is imported in the child), else ``None``."""
    return libc_function("prctl")
