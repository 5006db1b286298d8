"""A process killed (SIGKILL) after each step of a checkpoint leaves a data dir that restores the full state.

The worker (``_checkpoint_worker.py``) records a workload, takes one checkpoint, records more, prints the
state's fingerprint and starts a second checkpoint, killing itself when the chosen step is done.  A fresh
process then restores the data dir: the fingerprint must be the one printed before the kill; and that data
dir must take a new checkpoint and restore the same state again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from replay.storage.checkpoint import read_manifest
from replay.storage.checkpointer import STEPS

pytestmark = pytest.mark.e2e

WORKER = Path(__file__).with_name("_checkpoint_worker.py")


def run(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(WORKER), *args], capture_output=True, timeout=120, check=False, text=True
    )
    printed: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        printed.update(json.loads(line))
    if done.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"worker {args} exited {done.returncode}: {done.stderr[-3000:]}")
    return done.returncode, printed


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_after_each_step_restores_the_full_state(tmp_path: Path, step: str) -> None:
    data = tmp_path / "data"
    status, recorded = run("record", str(data), step)
    assert status == -signal.SIGKILL and "finished" not in recorded
    before = recorded["fingerprint"]
    assert before["sqs"]["jobs"]["messages"] and before["dynamodb"]  # the workload did build state

    manifest = read_manifest(data)
    assert manifest is not None
    # up to the manifest step the first checkpoint is current; from it on, the second one
    expected = "000002" if STEPS.index(step) >= STEPS.index("manifest") else "000001"
    assert manifest.checkpoint == expected

    status, restored = run("restore", str(data))
    assert status == 0
    assert restored["fingerprint"] == before
    assert restored["loaded"]["from"] == "snapshots" and restored["loaded"]["checkpoint"] == expected
    assert restored["again"] == before
    final = read_manifest(data)
    assert final is not None and final.checkpoint != expected  # the restored process took one of its own
    leftovers = sorted(p.name for p in (data / "checkpoints").iterdir())
    assert leftovers == [final.checkpoint, "MANIFEST.json"]  # and nothing is left behind
    assert not [p.name for p in data.iterdir() if p.name.startswith(".")]
