"""Compacted copies of call logs, written as a stream.

:func:`compact_logs` reads one or more stretches of log files
(:class:`Segment`) twice: once to plan which calls were undone later
(:func:`replay.compaction.plan_compaction`, which keeps only small
per-resource bookkeeping), once to copy the lines of the calls kept, byte for
byte (seeds, times and recorded responses included), to a new file that
replaces the destination atomically.  Memory stays flat whatever the size of
the logs; nothing is written to the sources.  The bodies kept calls name as
files (:mod:`replay.record.bodies`) are linked into the ``bodies`` folder beside the
destination before it is replaced.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..compaction import plan_compaction
from ..files import atomic_writer
from ..record.bodies import bodies_beside, keep_in, named_in, store_bytes
from ..record.entry import Entry, encode_entry
from ..record.log import CallLog, encode_header, read_header
from ..record.reader import Segment

__all__ = ["COMPACTION_STEPS", "RewriteReport", "compact_in_place", "compact_logs"]


@dataclasses.dataclass
class RewriteReport:
    """What a compaction did."""

    destination: Path
    read: int = 0
    kept: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    duration: float = 0.0
    by_rule: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.read - self.kept

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RewriteReport:
        """The report :meth:`to_dict` described (as a save's child sends it back)."""
        return cls(
            Path(document["destination"]),
            int(document["read"]),
            int(document["kept"]),
            int(document["bytes_before"]),
            int(document["bytes_after"]),
            float(document["duration"]),
            {str(rule): int(count) for rule, count in dict(document["by_rule"]).items()},
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "destination": str(self.destination),
            "read": self.read,
            "kept": self.kept,
            "dropped": self.dropped,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "duration": round(self.duration, 6),
            "by_rule": dict(sorted(self.by_rule.items())),
        }


def _entries(segments: Sequence[Segment]) -> Iterator[Entry]:
    for segment in segments:
        for _number, entry in segment.reader():
            yield entry


def compact_logs(
    segments: Sequence[Segment],
    destination: Path,
    from_empty: bool = True,
    header: str | None = None,
    files_from: int | None = None,
) -> RewriteReport:
    """Write the calls of ``segments`` that still matter to ``destination`` (atomically).

    :param from_empty: the segments start from an empty emulator (a whole
        history); ``False`` when they apply on top of a checkpoint.
    :param header: the checkpoint the new file continues (its first line), if any.
    :param files_from: request bodies this large or larger, inline in the segments, are written as
        body files beside ``destination`` and named by their entries (a checkpoint's ``calls.json``).
    :raises LogCorruptError: a segment has a malformed line before its end
        (``destination`` is left as it was).
    """
    started = time.perf_counter()
    report = RewriteReport(Path(destination))
    plan = plan_compaction(_entries(segments), from_empty)
    bodies = bodies_beside(report.destination)
    index = 0
    with atomic_writer(report.destination) as out:
        if header is not None:
            report.bytes_after += out.write(encode_header(header))
        for segment in segments:
            reader = segment.reader()
            for _number, line, entry in reader.records():
                if plan.keeps(index):
                    if segment.legacy:  # a LocalStack line: written as our entry
                        line = encode_entry(entry)
                    request = entry.request
                    if request.file is not None:  # its body goes beside it, durably, before the file is
                        keep_in(bodies, request.file)
                    elif files_from is not None and len(request.body) >= files_from:
                        entry.request = request.replace(body=store_bytes(bodies, request.body))
                        line = encode_entry(entry)
                    report.bytes_after += out.write(line if line.endswith(b"\n") else line + b"\n")
                    report.kept += 1
                index += 1
            report.bytes_before += reader.position - segment.start
    report.read = index
    report.by_rule = dict(plan.by_rule)
    report.duration = time.perf_counter() - started
    return report


COMPACTION_STEPS = ("compacted", "rewritten")


def compact_in_place(log: CallLog, start: int = 0, step: Callable[[str], None] | None = None) -> RewriteReport:
    """Compact the calls of the open ``log`` from byte ``start``, while appends go on.

    The calls up to the log's current end are compacted into a temporary file
    (step ``compacted``); the log is then rewritten as its header, those calls,
    and whatever was appended meanwhile (:meth:`~replay.record.log.CallLog.rewrite`,
    step ``rewritten``).  A crash before the rewrite leaves the log as it was, and
    one after it the compacted log; a temporary file a crash leaves is removed
    when the log is next opened.  A log with a header continues a checkpoint, so
    its calls are not compacted as if they started from empty.

    The report's ``bytes_before`` is the file up to the end compacted (its header and
    anything before ``start`` included); ``bytes_after`` what replaced those bytes (the
    header, then the calls kept): what was appended meanwhile counts in neither.

    :param step: called with each step's name once it is done (tests stop the process there).
    """
    end = log.size()
    since = log.bodies.mark()
    compacted = log.path.with_name(f".{log.path.name}.{os.getpid()}.compacted")
    try:
        report = compact_logs([Segment(log.path, start, end)], compacted, from_empty=log.header is None)
        report.destination = log.path
        if step is not None:
            step("compacted")
        log.rewrite(end, log.header, prefix=compacted)
        if step is not None:
            step("rewritten")
    finally:
        compacted.unlink(missing_ok=True)
    # the same stretch measured before and after: the file up to ``end`` (header included), and what replaced it
    report.bytes_before = end
    report.bytes_after += read_header(log.path)[1]
    log.bodies.prune(named_in(log.path, 0), since)  # bodies no kept call names any more
    return report
