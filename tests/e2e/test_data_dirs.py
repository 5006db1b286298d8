"""A data dir that holds state never starts empty: the other backend's state, a lost checkpoint, a hint ignored."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import AwsClients, Servers

pytestmark = pytest.mark.e2e


def files(data_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and path.name != ".replay.lock"
    }


@pytest.mark.parametrize(("wrote", "starts"), [("snapshot", "replay"), ("replay", "snapshot")])
def test_a_data_dir_of_one_backend_started_with_the_other_is_refused_naming_the_writer(
    servers: Servers, aws: AwsClients, tmp_path: Path, wrote: str, starts: str
) -> None:
    data = tmp_path / "volume"
    extra = {"SNAPSHOT_SAVE_STRATEGY": "ON_REQUEST"} if wrote == "snapshot" else {}
    server = servers.start(data, "--backend", wrote, env=extra)
    aws("sqs", server).create_queue(QueueName="kept")
    server.stop()
    before = files(data)
    done = servers.run(data, "--backend", starts)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("replay: error: ") and f"the {wrote} backend wrote" in last, done.stderr
    assert f"PERSISTENCE_BACKEND={wrote}" in last
    assert files(data) == before  # nothing written, nothing buried
    again = servers.start(data, "--backend", wrote)
    assert aws("sqs", again).get_queue_url(QueueName="kept")["QueueUrl"].endswith("/kept")


def test_a_lost_checkpoint_directory_stops_the_start_with_one_line(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "volume"
    server = servers.start(data, "--checkpoint-percentage", "100")  # a checkpoint at shutdown
    aws("sqs", server).create_queue(QueueName="kept")
    server.stop()
    [checkpoint] = [p for p in (data / "checkpoints").iterdir() if p.is_dir()]
    shutil.rmtree(checkpoint)
    before = files(data)
    done = servers.run(data)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"replay: error: {checkpoint}: checkpoint {checkpoint.name}, named by "), done.stderr
    assert "Traceback" not in done.stderr
    assert files(data) == before


def test_snapshot_settings_without_the_snapshot_backend_are_named_in_a_warning(
    servers: Servers, tmp_path: Path
) -> None:
    server = servers.start(tmp_path / "volume", env={"SNAPSHOT_SAVE_STRATEGY": "ON_SHUTDOWN"})
    stderr = server.stop()
    [warning] = [line for line in stderr.splitlines() if "WARNING" in line and "SNAPSHOT_SAVE_STRATEGY" in line]
    assert "SNAPSHOT_LOAD_STRATEGY" in warning and "PERSISTENCE_BACKEND=snapshot" in warning
