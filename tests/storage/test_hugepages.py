"""Huge pages between saves: asked for, folded for real, and never while a save's child shares the pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

from replay.errors import ConfigError
from replay.storage import hugepages
from replay.storage.hugepages import Folded

offered = pytest.mark.skipif(hugepages._madvise() is None, reason="no transparent huge pages on this machine")


def test_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hugepages.VARIABLE, raising=False)
    assert not hugepages.enabled()
    assert hugepages.fold() is None
    assert hugepages.describe() == "small pages (REPLAY_HUGE_PAGES=off)"
    monkeypatch.setenv(hugepages.VARIABLE, " OFF ")
    assert not hugepages.enabled()


def test_a_bad_setting_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hugepages.VARIABLE, "always")
    with pytest.raises(ConfigError, match=r"^invalid value for REPLAY_HUGE_PAGES: 'always' \(valid values: on, off\)$"):
        hugepages.enabled()


@offered
def test_on_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hugepages.VARIABLE, "on")
    assert hugepages.enabled()
    assert hugepages.describe() == "the heap in huge pages between saves (REPLAY_HUGE_PAGES=on)"


@offered
def test_a_fold_puts_a_dense_heap_in_huge_pages_and_a_save_still_writes_its_image() -> None:
    script = textwrap.dedent(
        """
        import json, os
        from replay.storage import hugepages
        from replay.storage.bgsave import SaveMode, run_save
        import contextlib

        def huge_kb():
            with open("/proc/self/smaps_rollup") as handle:
                return sum(int(line.split()[1]) for line in handle if line.startswith("AnonHugePages:"))

        state = {f"key{i}": "x" * 1000 + str(i) for i in range(96_000)}  # about 100 MB of 1 kB strings
        before = huge_kb()
        folded = hugepages.fold()
        after = huge_kb()
        outcome = run_save(lambda: len(state), lambda n: n, contextlib.nullcontext(), SaveMode.FORK)
        print(json.dumps({"before": before, "after": after, "regions": folded.regions,
                          "advised": folded.advised, "result": outcome.result, "forked": outcome.forked}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**_environ(), "REPLAY_HUGE_PAGES": "on"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["regions"] >= 1 and report["advised"] >= 64 << 20
    assert report["after"] - report["before"] >= 32 << 10, report  # KiB: at least 32 MB more in huge pages
    assert report["result"] == 96_000 and report["forked"] is True


def _environ() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != hugepages.VARIABLE}


@offered
def test_no_fold_runs_while_a_save_is_quiet_and_one_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hugepages.VARIABLE, "on")
    calls: list[float] = []
    release = threading.Event()

    def fold() -> Folded:
        calls.append(time.monotonic())
        release.wait(10)
        return Folded(0, 0, 0, 0.0)

    monkeypatch.setattr(hugepages, "fold", fold)
    with hugepages.quiet():
        time.sleep(0.2)
        assert calls == []  # nothing folds while a child may share the pages
    _wait_for(lambda: len(calls) == 1)

    # a save that starts while a fold runs waits for it to end before it forks
    entered: list[float] = []

    def save() -> None:
        with hugepages.quiet():
            entered.append(time.monotonic())

    saver = threading.Thread(target=save)
    saver.start()
    time.sleep(0.3)
    assert entered == []
    ended = time.monotonic()
    release.set()
    saver.join(5)
    assert entered and entered[0] >= ended
    _wait_for(lambda: len(calls) == 2)  # and its end asks for the next fold


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
