"""(e) Restore memory: peak RSS growth while replaying a large log (target < 100 MB for 1 GB).

A log of ``megabytes`` MB of recorded calls (each about 1 KiB, generated, as a
busy emulator would write them) is replayed into a no-op WSGI app in a fresh
interpreter; the child reports its peak RSS (``ru_maxrss``) after setting up
and after the replay.  The difference is what streaming the log costs.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from _harness import BenchmarkError, Result, Spread

from replay.config import LOG_FILE_NAME
from replay.record.entry import Entry, Request, Response, encode_entry

__all__ = ["Settings", "run"]

TARGET_MB = 100.0

CHILD = """
import json, resource, sys
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport

def noop(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]

replayer = Replayer(WSGITransport(noop), mapping=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = replayer.replay(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
json.dump({"before_kb": before, "after_kb": after, "restored": report.restored, "failed": report.failed}, sys.stdout)
"""


@dataclasses.dataclass(frozen=True)
class Settings:
    megabytes: int = 1024


def _write_log(path: Path, megabytes: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "wb") as handle:
        size = 0
        while size < megabytes * 1024 * 1024:
            body = json.dumps({"TableName": "t", "Item": {"pk": {"S": f"item-{count}"}, "data": {"S": "x" * 700}}})
            request = Request("POST", "/", "", [("X-Amz-Target", "DynamoDB_20120810.PutItem")], body.encode())
            line = encode_entry(Entry(float(count), "dynamodb", "PutItem", request, Response(200, [], b"{}")))
            handle.write(line)
            size += len(line)
            count += 1
    return count


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    log = workdir / "memory" / LOG_FILE_NAME
    say(f"  (e) writing a {settings.megabytes} MB log ...")
    count = _write_log(log, settings.megabytes)
    say(f"  (e) replaying {count} calls in a child process ...")
    done = subprocess.run([sys.executable, "-c", CHILD, str(log)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"replay child failed: {done.stderr[-500:]}")
    result = json.loads(done.stdout)
    if result["restored"] != count or result["failed"]:
        raise BenchmarkError(f"replayed {result['restored']} of {count} calls, {result['failed']} failed")
    growth_mb = (result["after_kb"] - result["before_kb"]) / 1024
    log.unlink()
    return [
        Result(
            key="restore.rss",
            title=f"(e) peak RSS growth replaying a {settings.megabytes} MB log ({count} calls), MB",
            unit="MB",
            value=Spread.of([growth_mb]),
            target=TARGET_MB if settings.megabytes >= 1024 else None,
            higher_is_better=False,
            details={"calls": count},
        )
    ]
