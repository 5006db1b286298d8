"""What the ``replay`` commands print for people: tables and one-line summaries.

Machines get the same facts as JSON (``--json``); nothing here is parsed back.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..restore.replayer import ReplayReport
from .summary import Summary

__all__ = ["describe_archive", "format_archive", "format_compaction", "format_report", "format_summary", "size", "when"]


def format_report(report: ReplayReport) -> str:
    """The report as a table for people."""
    rows = [(str(d.line), d.service, d.operation, d.describe()) for d in report.divergences]
    lines = []
    if rows:
        header = ("line", "service", "operation", "what differed")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            lines.append(
                "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            )
        lines.append("")
    verdict = "diverged" if report.divergences or report.failures else "converged"
    lines.append(
        f"{report.path}: {report.total} calls replayed, {report.restored} restored, {report.failed} failed, "
        f"{report.diverged} diverged, {report.mapped} generated values mapped: {verdict}"
    )
    return "\n".join(lines) + "\n"


def format_compaction(result: dict[str, Any]) -> str:
    """What ``replay compact`` did, for people."""
    if result.get("kind") == "checkpoint":
        base = result.get("base") or {}
        timings = result.get("timings") or {}
        return (
            f"checkpoint {result['checkpoint']}: {len(result['services'])} services, "
            f"{result['state_bytes']:,} bytes of state; {base.get('read', 0):,} calls of history kept as "
            f"{base.get('kept', 0):,}; calls paused {result['pause'] * 1000:.1f} ms, "
            f"{sum(timings.values()):.2f} s in all\n"
        )
    if result.get("kind") == "snapshot":
        return f"saved {len(result['saved'])} services: {', '.join(result['saved'])}\n"
    before, after = result["bytes_before"], result["bytes_after"]
    if not result["read"]:
        sizes = f"{after:,} bytes, as before" if before == after else f"{before:,} -> {after:,} bytes"
        return f"{result['destination']}: nothing to compact: no calls in the log ({sizes})\n"
    lines = [
        f"{result['destination']}: {result['read']:,} calls -> {result['kept']:,} "
        f"({result['dropped']:,} dropped), {before:,} -> {after:,} bytes "
        f"in {result['duration']:.2f} s"
    ]
    rules = result.get("by_rule") or {}
    if rules:
        width = max(len(rule) for rule in rules)
        lines += [f"  {rule.ljust(width)}  {count:,}" for rule, count in rules.items()]
    return "\n".join(lines) + "\n"


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_snapshots(described: dict[str, Any]) -> str:
    """``replay inspect`` of a ``snapshot`` data dir, for people."""
    services: dict[str, dict[str, Any]] = described["services"]
    lines = [f"{described['data_dir']}: snapshot backend, {len(services)} services with a snapshot"]
    if not described["key"]:
        lines.append("no snapshot.key: the snapshots cannot be checked, and will be refused")
    for name, about in sorted(services.items()):
        lines.append(f"  {name:<24} {about['bytes']:>12,} bytes  saved {when(about['saved'])}")
    return "\n".join(lines) + "\n"


def format_summary(summary: Summary) -> str:
    """``replay inspect`` for people."""
    lines = [
        f"{' + '.join(summary.files)}: {summary.backend} backend, {summary.calls:,} calls, {summary.bytes:,} bytes, "
        f"{when(summary.first)} .. {when(summary.last)}"
    ]
    if summary.checkpoint is not None:
        point: dict[str, Any] = summary.checkpoint
        lines.append(
            f"checkpoint {point['checkpoint']} ({when(point['created'])}): {len(point['services'])} services, "
            f"{point['folded']:,} calls of history, kept as {point['calls']:,}"
        )
    if summary.torn_line is not None:
        lines.append(f"line {summary.torn_line} is torn (a crash while it was written): it is not counted")
    rows = [(service, operation, f"{count:,}") for (service, operation), count in sorted(summary.by_operation.items())]
    if rows:
        header = ("service", "operation", "calls")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        lines.append("")
        for row in [header, *rows]:
            lines.append(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2].rjust(widths[2])}")
    restore = summary.last_restore
    lines.append("")
    if restore is None:
        lines.append("last restore: none recorded (no replay_report.json)")
    else:
        lines.append(
            f"last restore ({when(restore['written'])}): {restore['restored']} restored, {restore['failed']} failed, "
            f"{restore['diverged']} diverged"
        )
        for failure in (restore.get("failures") or [])[:20]:
            lines.append(
                f"  failed: line {failure['line']} {failure['service']}.{failure['operation']} "
                f"status {failure['status']}: {str(failure['message'])[:100]}"
            )
        for divergence in (restore.get("divergences") or [])[:20]:
            lines.append(f"  diverged: line {divergence['line']} {divergence['service']}.{divergence['operation']}")
    return "\n".join(lines) + "\n"


def size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{count} bytes"  # pragma: no cover - the loop returns


def describe_archive(document: dict[str, Any]) -> str:
    services = document["services"]
    what = f"{document['calls']:,} calls" if document["kind"] == "replay" else f"{len(services)} services"
    if services:
        what += f" ({', '.join(services)})"
    signed = "signed" if document["signed"] else "unsigned"
    return f"{document['kind']} archive: {what}, {document['files']} files, {size(int(document['bytes']))}, {signed}"


def format_archive(document: dict[str, Any]) -> str:
    """An archive's manifest for people (``replay inspect ARCHIVE``)."""
    return (
        f"{document['archive']}: {describe_archive(document)}; "
        f"exported {when(document['created'])} by replay {document['replay']}\n"
    )


def format_replica(described: dict[str, Any]) -> str:
    """A replica for people (``replay inspect s3://...``): its generations, restore window, size and freshness."""
    window = described["restore_window"]
    lines = [
        f"{described['replica']}: {len(described['generations'])} generation(s), {size(described['size'])}",
        f"  restore window: {when(window[0])} .. {when(window[1])}" if window else "  restore window: none yet",
    ]
    age = described["last_upload_age"]
    if age is not None:
        lines.append(f"  last upload: {when(described['last_upload'])} ({age:.1f} s ago)")
    writer = described["writer"]
    if writer:
        lines.append(
            f"  written by: {writer.get('host')} {writer.get('data_dir')} (pid {writer.get('pid')}), "
            f"lease renewed {when(writer.get('renewed'))}"
        )
    for generation in described["generations"]:
        first, last = generation["first_restore_point"], generation["last_restore_point"]
        span = f"{when(first)} .. {when(last)}" if first is not None else "no restore point"
        gap = f", GAP after call #{generation['gap_after']}" if generation["gap_after"] is not None else ""
        lines.append(
            f"  {generation['generation']}: {span}; {generation['snapshots']} snapshot(s), "
            f"{generation['segments']} segment(s) to call #{generation['last_seq']}, {size(generation['size'])}{gap}"
        )
    return "\n".join(lines) + "\n"


def format_recovery(document: dict[str, Any]) -> str:
    """What ``replay import s3://... [--at]`` restored, for people."""
    asked = f" as of {when(document['at'])}" if document["at"] is not None else ""
    base = f"snapshot {document['snapshot']}" if document["snapshot"] else "no snapshot"
    backend = " --backend snapshot" if document["kind"] == "snapshot" else ""
    if document["kind"] == "snapshot":
        held = f"{base} ({len(document['services'])} services)"
    else:
        calls = f"{document['calls']:,} calls through #{document['last_seq']}"
        held = f"{base} + {document['segments']} segment(s), {calls}"
    return (
        f"restored {document['replica']}{asked} into {document['data_dir']}: generation {document['generation']}, "
        f"{held}, state as of {when(document['restored_to'])}; serve it with: "
        f"replay serve --data-dir {document['data_dir']}{backend}\n"
    )
