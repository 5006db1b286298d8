"""Background saves: the work runs in a forked child on an image taken under the hold; failures come back whole."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replay.errors import BackgroundSaveError, ConfigError
from replay.storage.bgsave import SaveMode, mode, run_save

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork(2) only")


class Hold:
    """A hold that records when it was taken and let go."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.events.append("held")
        yield
        self.events.append("released")


def test_the_child_writes_an_image_of_the_state_at_the_hold(tmp_path: Path) -> None:
    state = {"value": 1}
    hold = Hold()
    target = tmp_path / "image"

    def capture() -> dict[str, int]:
        return dict(state)

    def write(image: dict[str, int]) -> dict[str, object]:
        time.sleep(0.2)  # the parent changes its state meanwhile: the child's image does not move
        target.write_text(str(image["value"]))
        return {"pid": os.getpid(), "value": image["value"]}

    changer = threading.Timer(0.05, lambda: state.update(value=2))
    changer.start()
    outcome = run_save(capture, write, hold(), SaveMode.FORK)
    changer.join()
    assert outcome.forked and outcome.result["value"] == 1 and target.read_text() == "1"
    assert outcome.result["pid"] != os.getpid()  # written by the child
    assert state["value"] == 2 and hold.events == ["held", "released"]
    assert outcome.held < 1.0  # the hold covered the fork only, not the child's 0.2 s (a bound, not a timing)
    _child_gone(outcome.result["pid"])
    assert gc.get_freeze_count() == 0  # the collector is back as it was


def _child_gone(pid: int, seconds: float = 10.0) -> None:
    """The child reaped (no zombie left) and the collector unfrozen, which a save leaves to a thread of its own
    once the child has reported success."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gc.get_freeze_count() == 0 and not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.01)
    raise AssertionError(f"child {pid} not reaped after {seconds} s, or the collector still frozen")


def test_a_child_that_reported_success_is_reaped_without_the_caller_waiting(tmp_path: Path) -> None:
    outcomes = [run_save(lambda: None, lambda _image: os.getpid(), contextlib.nullcontext(), SaveMode.FORK)]
    outcomes += [run_save(lambda: None, lambda _image: os.getpid(), contextlib.nullcontext(), SaveMode.FORK)]
    pids = [outcome.result for outcome in outcomes]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    for pid in pids:
        _child_gone(pid)
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped


def test_inline_captures_under_the_hold_and_writes_after_it(tmp_path: Path) -> None:
    order: list[str] = []

    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        order.append("held")
        yield
        order.append("released")

    outcome = run_save(
        lambda: order.append("capture") or 5, lambda n: order.append("write") or n * 2, hold(), SaveMode.INLINE
    )
    assert outcome.result == 10 and not outcome.forked
    assert order == ["held", "capture", "released", "write"]


def test_an_error_in_the_child_comes_back_in_one_line() -> None:
    def write(_image: object) -> None:
        raise OSError(28, "No space left on device\nsecond line")

    with pytest.raises(BackgroundSaveError, match=r"^\[Errno 28\] No space left on device second line$"):
        run_save(lambda: None, write, contextlib.nullcontext(), SaveMode.FORK)
    assert gc.get_freeze_count() == 0


def test_a_child_killed_or_hung_is_reported_and_reaped() -> None:
    def die(_image: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(BackgroundSaveError, match="killed by SIGKILL before it finished"):
        run_save(lambda: None, die, contextlib.nullcontext(), SaveMode.FORK)

    def hang(_image: object) -> None:
        time.sleep(60)

    started = time.monotonic()
    with pytest.raises(BackgroundSaveError, match=r"did not finish in 1 s"):
        run_save(lambda: None, hang, contextlib.nullcontext(), SaveMode.FORK, timeout=1.0)
    assert time.monotonic() - started < 30


def test_a_result_that_cannot_cross_the_pipe_is_an_error() -> None:
    with pytest.raises(BackgroundSaveError, match="Type is not JSON serializable"):
        run_save(lambda: None, lambda _image: object(), contextlib.nullcontext(), SaveMode.FORK)


def test_the_child_dies_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    """A server killed with kill -9 leaves no child writing into its data dir (Linux: PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import contextlib, os, time
        from pathlib import Path
        from replay.storage.bgsave import SaveMode, run_save

        def write(_image):
            Path({str(pid_file)!r}).write_text(str(os.getpid()))
            time.sleep(120)

        run_save(lambda: None, write, contextlib.nullcontext(), SaveMode.FORK)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.02)
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, SaveMode.FORK), ({"REPLAY_BGSAVE": "inline"}, SaveMode.INLINE), ({"REPLAY_BGSAVE": " FORK "}, SaveMode.FORK)],
)
def test_the_mode_comes_from_replay_bgsave(environ: dict[str, str], expected: SaveMode) -> None:
    assert mode(environ) is expected


def test_a_bad_mode_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"invalid value for REPLAY_BGSAVE: 'thread' \(valid values: fork, inline\)"):
        mode({"REPLAY_BGSAVE": "thread"})


def test_the_start_up_line_names_the_mode_and_what_waits() -> None:
    from replay.storage.bgsave import describe

    assert "REPLAY_BGSAVE=fork" in describe(SaveMode.FORK) and "only for the fork" in describe(SaveMode.FORK)
    assert "REPLAY_BGSAVE=inline" in describe(SaveMode.INLINE) and "wait" in describe(SaveMode.INLINE)
