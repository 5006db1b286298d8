"""The scripts in examples/ run as their docstrings say."""

from __future__ import annotations

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
