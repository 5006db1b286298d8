"""(g) Portable archives: exporting a data dir, importing it elsewhere, and the first start from it.

A history is recorded in-process into moto the way ``replay serve`` records it
(seeds, the mutation gate, automatic checkpoints with the default triggers):
``calls`` calls (20,000) of churn around a live state built by ``live`` calls
(1,000: queues with messages, a table with items, a bucket with objects; the
workload of (f)).  Every entry also goes to a plain log that is never
checkpointed.  Each round, interleaved in rotating order:

* *export*: ``replay export`` of the data dir to a file (offline: the files);
* *import*: ``replay import`` of that archive into a fresh data dir;
* *start from the archive*: moto reset, then the restore ``replay serve`` does
  at start-up, on the imported data dir (its compacted calls are replayed);
* *full replay*: moto reset, then a plain replay of the whole history.

Reported: the first start from an imported archive / a full replay of the
history it came from (the archive carries the calls that still matter, so its
start follows the live state); export and import times; the archive's size
against the data dir's and the plain log's.  The live state after the start
from the archive must equal the full replay's.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import BenchmarkError, Result, Spread, rotations
from bench_startup import history, live_calls, record, replay_plain, restore

from replay.config import LOG_FILE_NAME
from replay.serve.emulators import moto_emulator
from replay.share.archive import import_archive, read_manifest
from replay.share.transfer import export_state

__all__ = ["Settings", "run"]


@dataclasses.dataclass(frozen=True)
class Settings:
    live: int = 1_000
    calls: int = 20_000
    rounds: int = 3
    seed: int = 20261202


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def run(settings: Settings, workdir: Path, say: Callable[[str], None]) -> list[Result]:
    emulator = moto_emulator()
    data = workdir / "archive-source"
    plain = workdir / "archive-plain" / LOG_FILE_NAME
    say(f"  recording a {settings.calls:,}-call history around a {settings.live:,}-call live state ...")
    recorded = record(emulator, data, history(settings.calls, live_calls(settings.live), settings.seed), plain, say)

    arms = ["export", "import", "start from the archive", "full replay"]
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    ratios: list[float] = []
    archive = workdir / "state.replay"
    facts: dict[str, Any] = {}
    for number, order in enumerate(rotations(arms, settings.rounds)):
        took: dict[str, float] = {}
        states: dict[str, Any] = {}
        imported = workdir / f"archive-imported-{number}"
        # export and import come first whatever the rotation: the later arms need their results
        for arm in ("export", "import", *[arm for arm in order if arm not in ("export", "import")]):
            say(f"  {arm} ...")
            started = time.perf_counter()
            if arm == "export":
                export_state(str(archive), data)
                took[arm] = time.perf_counter() - started
            elif arm == "import":
                import_archive(archive, imported)
                took[arm] = time.perf_counter() - started
            elif arm == "start from the archive":
                took[arm], states[arm], _facts = restore(emulator, imported)
            else:
                took[arm], states[arm] = replay_plain(emulator, plain)
        if states["start from the archive"] != states["full replay"]:
            raise BenchmarkError("the imported archive did not restore the live state of the full history")
        for arm in arms:
            times[arm].append(took[arm])
        ratios.append(took["start from the archive"] / took["full replay"])
        facts = {
            "archive_calls": read_manifest(archive).calls,
            "archive_kb": round(_bytes(archive) / 1000, 1),
            "data_dir_kb": round(_bytes(data) / 1000, 1),
            "plain_log_kb": round(_bytes(plain) / 1000, 1),
        }
        shutil.rmtree(imported)

    seconds = {arm: round(Spread.of(values).median, 3) for arm, values in times.items()}
    details: dict[str, float | int | str] = {
        **{f"seconds[{arm}]": value for arm, value in seconds.items()},
        "history_calls": recorded["calls"],
        "checkpoints_while_recording": recorded["checkpoints"],
        **facts,
    }
    return [
        Result(
            "g-start-from-archive",
            f"(g) first start from an imported archive / full replay of its {settings.calls:,}-call history",
            "x",
            Spread.of(ratios),
            None,
            False,
            details,
        ),
        Result(
            "g-export", "(g) replay export of that data dir (offline)", "s", Spread.of(times["export"]), None, False
        ),
        Result("g-import", "(g) replay import of the archive", "s", Spread.of(times["import"]), None, False),
    ]
