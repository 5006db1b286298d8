"""One owner per data dir, and what it says about itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from replay.errors import DataDirInUseError
from replay.storage.datadir import LOCK_FILE_NAME, DataDirLock, owner


def test_a_second_owner_is_refused_with_the_first_ones_url(tmp_path: Path) -> None:
    data = tmp_path / "volume"
    assert owner(data) is None
    with DataDirLock(data, command="replay serve") as lock:
        lock.update(url="http://127.0.0.1:4566")
        assert owner(data) == {"pid": os.getpid(), "command": "replay serve", "url": "http://127.0.0.1:4566"}
        with pytest.raises(
            DataDirInUseError, match=r"in use by another replay \(pid \d+, command replay serve, url http"
        ):
            DataDirLock(data)
    assert owner(data) is None  # released
    assert not (data / LOCK_FILE_NAME).exists()  # and nothing left behind
    DataDirLock(data).release()


def test_a_killed_owner_leaves_the_file_but_not_the_lock(tmp_path: Path) -> None:
    data = tmp_path / "volume"
    code = (
        "import os, sys; from replay.storage.datadir import DataDirLock; DataDirLock(sys.argv[1], url='x'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(data)], check=True, timeout=60)
    assert (data / LOCK_FILE_NAME).read_bytes()  # what it wrote is still there
    assert owner(data) is None
    with DataDirLock(data) as lock:
        assert lock.about == {"pid": os.getpid()}
