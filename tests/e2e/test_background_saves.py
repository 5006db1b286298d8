"""Background saves under `replay serve`: a kill -9 while a save's child runs loses nothing and leaves nothing.

The server is killed while the forked child of a checkpoint (replay backend) or of a snapshot save is
writing; the child must die with it (no process keeps the port, the log's lock or the data dir), and a
restart must serve every item written before the kill, from the previous checkpoint or save plus the log.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = pytest.mark.e2e

TABLE = "orders"
ITEMS = 6000  # enough that pickling them takes the child a while


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _fill(dynamodb: Any, start: int, count: int) -> None:
    for first in range(start, start + count, 25):
        batch = [
            {"PutRequest": {"Item": {"pk": {"S": f"item-{n}"}, "payload": {"S": f"{n}:" + "x" * 900}}}}
            for n in range(first, min(first + 25, start + count))
        ]
        dynamodb.batch_write_item(RequestItems={TABLE: batch})


def _kill_during_a_save(server: ReplayServer) -> int:
    """Ask for a save, kill -9 the server once the save's child exists; the child's pid."""

    def ask() -> None:
        with contextlib.suppress(requests.RequestException):  # the server is killed under it
            requests.post(server.endpoint + "/_localstack/state/save", timeout=120)

    save = threading.Thread(target=ask, daemon=True)
    save.start()
    deadline = time.monotonic() + 60
    while not (children := _children(server.proc.pid)):
        assert save.is_alive() and time.monotonic() < deadline, "the save ended before its child was seen"
        time.sleep(0.001)
    server.kill()
    return children[0]


@pytest.mark.parametrize("backend", ["replay", "snapshot"])
def test_a_kill_while_a_save_child_writes_loses_nothing(
    servers: Servers, aws: AwsClients, tmp_path: Path, backend: str
) -> None:
    data = tmp_path / "data"
    args = ["--backend", backend, "--checkpoint-percentage", "0", "--save-strategy", "MANUAL"]
    server = servers.start(data, *args)
    dynamodb = aws("dynamodb", server)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    _fill(dynamodb, 0, ITEMS)
    answer = requests.post(server.endpoint + "/_localstack/state/save", timeout=120)
    assert answer.status_code == 200 and '"error"' not in answer.text, answer.text  # a first, complete save
    _fill(dynamodb, ITEMS, 50)  # after it: in the log (replay) or lost with the kill (snapshot, MANUAL)

    child = _kill_during_a_save(server)
    deadline = time.monotonic() + 10
    while _alive(child):  # it dies with the server (PR_SET_PDEATHSIG), not after finishing its save
        assert time.monotonic() < deadline, f"the save's child {child} outlived the killed server"
        time.sleep(0.01)

    # killed a moment after it was forked, long before it could have finished: it wrote no complete image
    if backend == "replay":
        current = json.loads((data / "checkpoints" / "MANIFEST.json").read_bytes())["checkpoint"]
        unfinished = [d.name for d in (data / "checkpoints").iterdir() if d.is_dir() and d.name != current]
        assert all(not (data / "checkpoints" / name / "calls.json").exists() for name in unfinished), unfinished
    again = servers.start(data, *args)  # the port, the data dir's lock and the log are free
    dynamodb = aws("dynamodb", again)
    expected = ITEMS + 50
    count = sum(page["Count"] for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE, Select="COUNT"))
    # replay: every acknowledged call; snapshot (MANUAL): the last complete save (the killed child's never
    # reached its rename), never a torn file
    assert count == (expected if backend == "replay" else ITEMS), count
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "item-17"}})["Item"]
    assert item["payload"]["S"].startswith("17:")
    again.stop()
