"""Benchmark suite of ``replay``: the cost of recording and of replaying, as ratios measured side by side.

Usage, from the repository root with the package installed::

    python tests/benchmarks/run.py            # full run (about a minute or two)
    python tests/benchmarks/run.py --quick    # a few seconds: every benchmark, tiny sizes
    python tests/benchmarks/run.py --json     # the results as JSON on stdout

What is measured (each arm interleaved with its baseline, round by round, in
one process; the median of the per-round paired values is reported with its
spread; targets are a column, never asserted):

(a) moto throughput in-process (WSGI, no HTTP) with recording vs without, for
    ``REPLAY_FSYNC`` everysec and always (targets >= 0.98x, >= 0.85x), one
    thread at a time, and for always also with 8 threads calling at once
    (the log's group commit shares syncs between them); and the ceiling of
    always with one caller on this disk (moto, then an entry-sized line synced);
(b) time added per recorded call around a no-op WSGI app, fsync everysec and no
    (target <= 10 us);
(c) replaying a recorded log vs moto serving the same calls directly
    (target <= 1.15x), and replay with the id mapping vs plain replay of the
    same log (target <= 1.10x);
(d) the snapshot backend: save vs plain pickle + write (target <= 1.3x),
    restore of a 2,000-item DynamoDB table vs replaying its PutItems (and in ms,
    target < 50), another service's latency while a save runs;
(e) peak RSS growth while replaying a 1 GB log (target < 100 MB);
(f) start-up after a 100,000-call history vs after a 1,000-call one with the
    same live state (target <= 1.5x), vs a plain full replay of the 100,000
    calls, and after a 3,751-call, 11 MB history (target < 10 s).  The longest
    benchmark: about 10 minutes (recording and fully replaying 100,000 calls);
(g) portable archives: ``replay export`` and ``replay import`` of a 20,000-call
    history, and the first start from the imported archive vs a full replay of
    that history;
(h) stall during saves, with ~60 MB of state (a DynamoDB table of 8,000 1 kB
    items, an S3 bucket of 160 256 kB objects): SQS SendMessage latency while
    saves run back to back in another thread vs idle, median and p99 (targets
    <= 1.5x, <= 3x), for the snapshot backend (``save_service`` of DynamoDB and
    S3) and the replay backend (``checkpoint()``), and over HTTP to a real
    ``replay serve --backend snapshot`` saving everything back to back; how long a save held the
    captured service, in ms per 100 MB of state; and the snapshot save vs plain
    ``pickle.dumps`` of the same backends + write + fsync (target <= 1.3x);
(i) restart with that state: start-to-healthy of a real ``replay serve`` on a
    copy of its data dir vs on an empty one (target <= 1.3x), for
    ``--backend replay`` (a checkpoint) and ``--backend snapshot``, and the
    first DynamoDB GetItem after the start (its answer checked);
(j) continuous replication of the log to S3 (a real ``moto_server``): recording
    throughput in-process (as (a), fsync everysec) with a replicator running vs
    without (target >= 0.98x), in rounds of several replication intervals; and
    the lag of a real ``replay serve --replicate --replicate-interval 1s`` at
    500 PutItem calls/s, from each call's acknowledgement to its segment listed
    on S3, median and p99 (target <= 1 s), every call checked in the replica;
(k) instructions per call, counted by cachegrind (needs ``valgrind``): what the
    recorder adds around a no-op app, and moto's instructions per call without /
    with the recorder (and the seeder): figures this machine's noise cannot move.

Progress goes to stderr.  The logs are written to a temporary directory
(``--dir`` picks where: fsync costs depend on the filesystem), removed at the
end.  The exit status is 0 whatever the figures, and 1 if the harness itself
failed (a call answered non-2xx, a log missed entries).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import _harness
import bench_archive
import bench_concurrent
import bench_instructions
import bench_memory
import bench_overhead
import bench_replay
import bench_replication
import bench_restart
import bench_snapshot
import bench_stall
import bench_startup
import bench_throughput
from _harness import BenchmarkError, Result
from _workload import prepare_environment

BENCHMARKS = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k")


def _settings(quick: bool) -> tuple[bench_throughput.Settings, bench_overhead.Settings, bench_replay.Settings]:
    if quick:
        return (
            bench_throughput.Settings(rounds=2, batches=1, per_service=4),
            bench_overhead.Settings(rounds=2, calls=500),
            bench_replay.Settings(rounds=2, calls=60, warmup_calls=20),
        )
    return bench_throughput.Settings(), bench_overhead.Settings(), bench_replay.Settings()


def run_benchmarks(selected: Sequence[str], quick: bool, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    throughput, overhead, replay = _settings(quick)
    results: list[Result] = []
    if "a" in selected:
        say("(a) moto throughput with vs without recording ...")
        results += bench_throughput.run(throughput, workdir, say)
        concurrent = bench_concurrent.Settings()
        if quick:
            concurrent = bench_concurrent.Settings(rounds=2, threads=2, per_service=2)
        results += bench_concurrent.run(concurrent, workdir, say)
    if "b" in selected:
        say("(b) time added per recorded call around a no-op app ...")
        results += bench_overhead.run(overhead, workdir, say)
    if "c" in selected:
        say("(c) replay vs direct ...")
        results += bench_replay.run(replay, workdir, say)
    if "d" in selected:
        say("(d) snapshot backend ...")
        snapshot = (
            bench_snapshot.Settings(items=200, rounds=2, latency_calls=20) if quick else bench_snapshot.Settings()
        )
        results += bench_snapshot.run(snapshot, workdir, say)
    if "e" in selected:
        say("(e) restore memory ...")
        results += bench_memory.run(bench_memory.Settings(megabytes=20 if quick else 1024), workdir, say)
    if "f" in selected:
        say("(f) bounded start-up ...")
        startup = (
            bench_startup.Settings(short=300, long=3000, localstack=400, rounds=2)
            if quick
            else bench_startup.Settings()
        )
        results += bench_startup.run(startup, workdir, say)
    if "g" in selected:
        say("(g) portable archives ...")
        archive = bench_archive.Settings(live=300, calls=2_000, rounds=2) if quick else bench_archive.Settings()
        results += bench_archive.run(archive, workdir, say)
    if "h" in selected:
        say("(h) stall during saves of a large state ...")
        stall = (
            bench_stall.Settings(items=400, objects=8, rounds=2, seconds=0.5, save_rounds=2)
            if quick
            else bench_stall.Settings()
        )
        results += bench_stall.run(stall, workdir, say)
    if "i" in selected:
        say("(i) restart with a large state ...")
        restart = bench_restart.Settings(items=400, objects=8, rounds=2) if quick else bench_restart.Settings()
        results += bench_restart.run(restart, workdir, say)
    if "j" in selected:
        say("(j) replication to S3 ...")
        replication = (
            bench_replication.Settings(rounds=2, seconds=0.5, duration=3.0, windows=3)
            if quick
            else bench_replication.Settings()
        )
        results += bench_replication.run(replication, workdir, say)
    if "k" in selected:
        say("(k) instructions per call (cachegrind) ...")
        counting = (
            bench_instructions.Settings(noop_calls=200, moto_batches=1) if quick else bench_instructions.Settings()
        )
        results += bench_instructions.run(counting, workdir, say)
    return results


def _details(result: Result) -> str:
    parts = []
    for key, value in result.details.items():
        if key.startswith("per_call_us_"):
            parts.append(f"{key.removeprefix('per_call_us_')} {value} us")
        elif not result.unit and key in ("without", "with"):  # (k): instruction counts
            parts.append(f"{key} {value:,}")
    return ", ".join(parts)


def format_table(results: Sequence[Result], info: dict[str, object], elapsed: float, quick: bool) -> str:
    rows = [("benchmark", "measured", "p25 - p75", "min - max", "target", "meets", "per call (medians)")]
    for result in results:
        spread = result.value
        rows.append(
            (
                result.title,
                result.format_value(spread.median),
                f"{result.format_value(spread.p25)} - {result.format_value(spread.p75)}",
                f"{result.format_value(spread.low)} - {result.format_value(spread.high)}",
                result.format_target(),
                result.verdict(),
                _details(result),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        f"replay benchmarks ({'quick smoke run: figures are not meaningful' if quick else 'full run'}, "
        f"{elapsed:.0f} s)",
        f"python: {info['python']}   cores: {info['cores']} ({info['usable_cores']} usable)   cpu: {info['cpu']}",
        f"platform: {info['platform']}   logs on: {info['log_filesystem']}",
        f"load average: {info['load_average']} at start, {info['load_average_end']} at end",
        "",
    ]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    facts = {
        result.key: result.details
        for result in results
        if result.key[:2] in ("f-", "g-", "h-", "i-", "j-") and result.details
    }
    if facts:
        lines.append("")
        for key, details in facts.items():
            lines.append(f"{key}: " + ", ".join(f"{name} {value}" for name, value in details.items()))
    lines += [
        "",
        "measured = median over rounds of the paired per-round value (arms interleaved, rotating order);",
        "ratios are throughput with / without for (a), time replay / direct for (c); (b) is time with - without.",
    ]
    if any(result.within_spread for result in results):
        lines.append("* the target lies inside the p25-p75 spread: the verdict may flip; rerun on a quiet machine.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every benchmark")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help="comma-separated benchmarks to run, among a (throughput), b (overhead), c (replay), d (snapshots), "
        "e (restore memory), f (start-up), g (archives), h (stall during saves), i (restart with a large state), "
        "j (replication to S3), k (instructions per call); "
        "default: all",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary logs go (default: $TMPDIR)")
    args = parser.parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown or not selected:
        parser.error(
            f"--only: unknown benchmark(s) {', '.join(unknown) or '(none given)'}; choose among {', '.join(BENCHMARKS)}"
        )

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    prepare_environment()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replay-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        info: dict[str, object] = dict(_harness.machine_info(workdir))
        try:
            results = run_benchmarks(selected, args.quick, workdir, say)
        except BenchmarkError as exc:
            say(f"benchmark harness failed: {exc}")
            return 1
    info["load_average_end"] = _harness.machine_info(Path(tempfile.gettempdir()))["load_average"]
    elapsed = time.perf_counter() - started
    if args.json:
        document = {
            "quick": args.quick,
            "elapsed_seconds": round(elapsed, 1),
            "machine": info,
            "results": [result.to_dict() for result in results],
        }
        print(json.dumps(document, indent=2))
    else:
        print(format_table(results, info, elapsed, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
