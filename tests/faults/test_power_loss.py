"""Simulated power loss after every file-system operation of real workloads (issue 14 §2).

Each test runs one workload under strace (``powerloss_run``), rebuilds from the trace every file tree a power
loss could leave after each operation (``powerloss``: unsynced data dropped, kept or garbled, unsynced
directory changes undone), starts ``replay serve`` on a copy of each chosen tree, reads its state back with
boto3 and checks the property: a start that refuses names the path at fault on one line; a start that
succeeds holds a prefix of the history with every call acknowledged before the crash; no empty start from a
tree whose durable log, manifest or snapshots held state.

By default each workload checks a seeded sample of three trees (``REPLAY_FAULTS=all`` checks every one,
``REPLAY_FAULTS=N`` N per workload; ``REPLAY_FAULTS_SEED``, ``REPLAY_FAULTS_JOBS`` and
``REPLAY_FAULTS_REPORT=PATH``, a JSON-lines record of every crash point and verdict, are described in
``powerloss_run``).  The sample always holds the trees left once each command is done, so a file or
directory a command never syncs is found on every run.

Tests marked ``xfail(strict=True)`` fail today because of the bug their reason names; they turn into
failures (XPASS) once it is fixed, and the mark goes.  Only a property violation is the expected failure
(``raises=PropertyViolated``): an error of the harness itself fails those tests too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from powerloss_run import (
    SNAPSHOT_CHECK,
    CheckSpec,
    Driver,
    PropertyViolated,
    Recording,
    Result,
    Selector,
    after_unlinks,
    both,
    history_replay,
    history_snapshot,
    record_compact,
    record_serve,
    record_transfer,
    run_checks,
    sample,
    strace_missing,
)

MISSING = strace_missing()

pytestmark = [
    pytest.mark.faults,
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING is not None, reason=f"the power-loss simulation needs strace: {MISSING}"),
]


def verdict(result: Result) -> None:
    print(result.summary())
    for violation in result.violations:
        print(violation.format())
    if result.violations:
        raise PropertyViolated(
            result.summary() + "\n" + "\n".join(violation.format() for violation in result.violations)
        )


def check(recording: Recording, tmp_path: Path, select: Selector = sample, label: str = "checks") -> Result:
    result = run_checks(recording, tmp_path, select, label)
    assert result.checked, "no crash point was checked"
    assert recording.history, "the workload issued no call"
    return result


def test_replay_backend_with_checkpoints(tmp_path: Path) -> None:
    """(a) ``REPLAY_FSYNC=always``, a checkpoint every few calls and when the server stops."""
    recording = record_serve(
        "replay",
        tmp_path,
        history_replay,
        ("--fsync", "always", "--checkpoint-percentage", "100", "--checkpoint-min-size", "4kb"),
        {},
        CheckSpec("data", ()),
    )
    verdict(check(recording, tmp_path))


def test_snapshot_backend_saving_on_request(tmp_path: Path) -> None:
    """(b) ``SNAPSHOT_SAVE_STRATEGY=ON_REQUEST`` from a fresh data dir (the first start makes ``snapshot.key``).

    Checked with ``--load-strategy ON_STARTUP``, so that a refused snapshot refuses the start.  Besides the
    sample, what a kill -9 leaves right after each file the backend removes under ``state/`` is checked.
    """
    recording = record_serve(
        "snapshot",
        tmp_path,
        history_snapshot,
        ("--backend", "snapshot"),
        {"SNAPSHOT_SAVE_STRATEGY": "ON_REQUEST"},
        CheckSpec("data", SNAPSHOT_CHECK, backend="snapshot"),
    )
    verdict(check(recording, tmp_path, both(sample, after_unlinks("data/state/"))))


def test_compaction_of_a_stopped_data_dir(tmp_path: Path) -> None:
    """(c) ``replay compact DIR`` rewriting the log of a server that stopped."""
    verdict(check(record_compact(tmp_path), tmp_path))


@pytest.mark.parametrize(
    "backend",
    [
        "replay",
        "snapshot",
    ],
)
def test_export_then_import(tmp_path: Path, backend: str) -> None:
    """(d) ``replay export`` of a stopped server's data dir, then ``replay import`` of it into a new one."""
    verdict(check(record_transfer(tmp_path, backend), tmp_path))


def history_one_queue(driver: Driver) -> None:
    driver.create_queue("jobs")
    driver.send("jobs", "job-1")


def test_a_data_dir_that_serve_creates(tmp_path: Path) -> None:
    """(e) ``replay serve --data-dir NEW`` where NEW does not exist yet (the README's first command).

    Until 4aba07a the new data dir's entry was never fsynced in its parent: after a power loss the whole
    data dir, with every acknowledged call in it, could be gone.
    """
    recording = record_serve(
        "fresh", tmp_path, history_one_queue, ("--fsync", "always"), {}, CheckSpec("data", ()), create=False
    )
    verdict(check(recording, tmp_path))
