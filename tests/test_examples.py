"""The scripts in examples/ run as their docstrings say."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=True, cwd=EXAMPLES.parent
    )
    return done.stdout


def test_wrap_wsgi_app_keeps_notes_across_runs(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    assert run(str(EXAMPLES / "wrap_wsgi_app.py"), str(volume), "first note") == "notes: ['first note']\n"
    second = run(str(EXAMPLES / "wrap_wsgi_app.py"), str(volume), "second note ü")
    assert second == "notes: ['first note', 'second note ü']\n"
    lines = (volume / "recorded_api_calls.json").read_bytes().splitlines()
    assert len(lines) == 2  # only the two POSTs; the GETs are reads


def test_serve_backends_restores_with_both_backends() -> None:
    assert run(str(EXAMPLES / "serve_backends.py")) == (
        "replay backend: queue jobs holds ['hello'], bucket photos holds ['cat.jpg'] after a restart\n"
        "snapshot backend: queue jobs holds ['hello'], bucket photos holds ['cat.jpg'] after a restart\n"
    )


def test_share_state_moves_a_state_through_s3() -> None:
    assert run(str(EXAMPLES / "share_state.py")) == (
        "alice exported 3 calls to s3://team-state/main.replay\nbob's server: queues ['jobs'], users ['Ada']\n"
    )


def test_replicate_restores_the_newest_state_and_a_past_one_from_s3_alone() -> None:
    assert run(str(EXAMPLES / "replicate.py")) == (
        "the replica holds 1 generation; its last upload was under 2 s before the crash\n"
        "newest state: users ['Grace']\n"
        "state at the time between the phases: users ['Ada']\n"
    )


def test_integration_suite_starts_from_recorded_state(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("state", "__pycache__"))
    suite = copy / "integration_tests"
    assert run(str(suite / "make_state.py")) == f"state recorded in {suite / 'state'}\n"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(copy), str(suite)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
