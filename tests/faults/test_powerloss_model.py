"""The power-loss model itself (:mod:`powerloss`), on hand-written strace output: no strace, no server."""

from __future__ import annotations

from pathlib import Path

import pytest
from powerloss import VARIANTS, Simulation, TraceError, parse_trace, simulate

pytestmark = pytest.mark.faults

ROOT = "/w"


def hx(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return "".join(f"\\x{byte:02x}" for byte in data)


def fd(number: int, path: str) -> str:
    return f"{number}<{hx(path)}>"


def string(text: str | bytes) -> str:
    return f'"{hx(text)}"'


def run(tmp_path: Path, lines: list[str], initial: dict[str, bytes | None] | None = None) -> Simulation:
    trace = tmp_path / "trace"
    trace.write_text("".join(f"100 {1000 + index / 1000:.6f} {line}\n" for index, line in enumerate(lines)))
    return simulate(Path(ROOT), initial or {"d": None}, [trace], seed=1)


def files(simulation: Simulation, variant: str, point: int = -1) -> dict[str, bytes | None]:
    index = simulation.points[point].index
    tree = simulation.trees[simulation.leaves[(index, variant)]]
    return {path: None if content is None else simulation.blobs[content] for path, content in tree.files}


def open_(number: int, path: str, flags: str = "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC") -> str:
    return f"openat(AT_FDCWD<{hx('/')}>, {string(path)}, {flags}, 0600) = {fd(number, path)}"


ONE, TWO = string("one\n"), string("two\n")


def test_an_unsynced_write_is_volatile_and_a_sync_makes_it_durable(tmp_path: Path) -> None:
    simulation = run(
        tmp_path,
        [
            open_(3, "/w/d/f", "O_RDWR|O_CREAT|O_APPEND|O_CLOEXEC"),
            f"write({fd(3, '/w/d/f')}, {ONE}, 4) = 4",
            f"fdatasync({fd(3, '/w/d/f')}) = 0",
            f"write({fd(3, '/w/d/f')}, {TWO}, 4) = 4",
        ],
    )
    assert files(simulation, "kept")["d/f"] == b"one\ntwo\n"
    assert files(simulation, "dropped")["d/f"] == b"one\n"
    garbled = files(simulation, "garbled")["d/f"]
    assert garbled is not None and garbled[:4] == b"one\n" and len(garbled) == 8 and garbled[4:] != b"two\n"
    # the file's directory entry was never synced: a power loss may take the file with it
    assert "d/f" not in files(simulation, "undone")
    assert files(simulation, "kept", 1)["d/f"] == b""  # right after the create, before any write


def test_a_sync_covers_only_the_writes_completed_before_it_started(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.write_text(
        f"100 1.000000 {open_(3, '/w/d/f', 'O_RDWR|O_CREAT|O_APPEND')}\n"
        f"100 1.000001 write({fd(3, '/w/d/f')}, {string('a')}, 1) = 1\n"
        f"101 1.000002 fsync({fd(3, '/w/d/f')} <unfinished ...>\n"
        f"100 1.000003 write({fd(3, '/w/d/f')}, {string('b')}, 1) = 1\n"
        f"101 1.000004 <... fsync resumed>) = 0\n"
    )
    simulation = simulate(Path(ROOT), {"d": None}, [trace], seed=1)
    assert [point.syscall for point in simulation.points][-1] == "fsync(d/f)"
    assert files(simulation, "kept")["d/f"] == b"ab"
    assert files(simulation, "dropped")["d/f"] == b"a"


def test_a_rename_is_undone_until_its_directory_is_synced(tmp_path: Path) -> None:
    simulation = run(
        tmp_path,
        [
            open_(3, "/w/d/.f.tmp"),
            f"write({fd(3, '/w/d/.f.tmp')}, {string('new')}, 3) = 3",
            f"fsync({fd(3, '/w/d/.f.tmp')}) = 0",
            f"close({fd(3, '/w/d/.f.tmp')}) = 0",
            f"rename({string('/w/d/.f.tmp')}, {string('/w/d/f')}) = 0",
            f"openat(AT_FDCWD<{hx('/')}>, {string('/w/d')}, O_RDONLY|O_DIRECTORY) = {fd(4, '/w/d')}",
            f"fsync({fd(4, '/w/d')}) = 0",
        ],
        initial={"d": None, "d/f": b"old"},
    )
    before_sync = simulation.points[-2]
    assert before_sync.syscall == "rename(d/.f.tmp -> d/f)"
    assert files(simulation, "kept", -2) == {"d": None, "d/f": b"new"}
    assert files(simulation, "undone", -2) == {"d": None, "d/f": b"old"}
    assert files(simulation, "undone") == {"d": None, "d/f": b"new"}


def test_positions_truncates_and_positional_writes(tmp_path: Path) -> None:
    simulation = run(
        tmp_path,
        [
            open_(3, "/w/d/f", "O_RDWR|O_CREAT"),
            f"write({fd(3, '/w/d/f')}, {string('abcdef')}, 6) = 6",
            f"lseek({fd(3, '/w/d/f')}, 2, SEEK_SET) = 2",
            f"write({fd(3, '/w/d/f')}, {string('XY')}, 2) = 2",
            f"pwrite64({fd(3, '/w/d/f')}, {string('Z')}, 1, 0) = 1",
            f"ftruncate({fd(3, '/w/d/f')}, 5) = 0",
            f"writev({fd(3, '/w/d/f')}, [{{iov_base={string('1')}, iov_len=1}}, "
            f"{{iov_base={string('23')}, iov_len=2}}], 2) = 3",
        ],
    )
    # the fd position is 4 after "XY"; the truncate does not move it
    assert files(simulation, "kept")["d/f"] == b"ZbXY123"


def test_a_deleted_file_and_a_directory_rename_are_followed(tmp_path: Path) -> None:
    simulation = run(
        tmp_path,
        [
            f"mkdir({string('/w/d/stage')}, 0700) = 0",
            open_(3, "/w/d/stage/f"),
            f"write({fd(3, '/w/d/stage/f')}, {string('x')}, 1) = 1",
            f"rename({string('/w/d/stage')}, {string('/w/d/final')}) = 0",
            f"write(3<{hx('/w/d/final/f')}>(deleted), {string('y')}, 1) = 1",
            f"unlinkat({fd(5, '/w/d')}, {string('gone')}, 0) = 0",
        ],
        initial={"d": None, "d/gone": b"g"},
    )
    # the write through the open fd reaches the file, whatever its name says now
    assert files(simulation, "kept") == {"d": None, "d/final": None, "d/final/f": b"xy"}
    assert files(simulation, "undone") == {"d": None, "d/gone": b"g"}


def test_every_crash_point_has_every_variant(tmp_path: Path) -> None:
    simulation = run(tmp_path, [f"mkdir({string('/w/d/e')}, 0700) = 0"])
    assert len(simulation.points) == 2  # before the mkdir, after it
    assert {variant for _index, variant in simulation.leaves} == set(VARIANTS)
    assert [call.name for call in parse_trace(tmp_path / "trace")] == ["mkdir"]


def test_traces_run_one_after_the_other(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text(
        f"100 1.000000 {open_(3, '/w/d/f', 'O_RDWR|O_CREAT|O_APPEND')}\n"
        f"100 1.000001 write({fd(3, '/w/d/f')}, {string('a')}, 1) = 1\n"
    )
    # a later process syncs what an earlier one wrote: its sequence numbers go on from the first trace's
    second.write_text(
        f"200 2.000000 {open_(3, '/w/d/f', 'O_RDONLY')}\n"
        f"200 2.000001 fdatasync({fd(3, '/w/d/f')}) = 0\n"
        f"200 2.000002 fcntl({fd(3, '/w/d/f')}, F_DUPFD_CLOEXEC, 0) = {fd(4, '/w/d/f')}\n"
    )
    simulation = simulate(Path(ROOT), {"d": None}, [first, second], seed=1)
    assert [point.trace for point in simulation.points] == [0, 0, 0, 1]
    assert files(simulation, "dropped")["d/f"] == b"a"
    assert simulation.points[2].until == 2.000001  # the next operation completed in the second trace


def test_a_write_through_an_fd_the_trace_never_opened_stops_the_simulation(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="never opened"):
        run(tmp_path, [f"write({fd(7, '/w/d/f')}, {string('x')}, 1) = 1"], initial={"d": None, "d/f": b""})


def test_the_property_is_judged_at_every_crash_point_that_leaves_a_tree(tmp_path: Path) -> None:
    from powerloss_run import EMPTY, CheckSpec, Issued, Observation, Recording, judge

    # one call, acknowledged after the log line was written and synced
    simulation = run(
        tmp_path,
        [
            open_(3, "/w/d/log", "O_RDWR|O_CREAT|O_APPEND"),
            f"write({fd(3, '/w/d/log')}, {string('{}' + chr(10))}, 3) = 3",
            f"fdatasync({fd(3, '/w/d/log')}) = 0",
        ],
        initial={"d": None},
    )
    acked = simulation.points[-1].time + 0.0001  # after the sync completed
    queue = '{"dynamodb": {}, "s3": {}, "sqs": {"q": []}}'
    recording = Recording(
        "unit",
        Path(ROOT),
        {},
        [],
        [Issued(1, "sqs", "CreateQueue", "q", acked - 1, acked)],
        [EMPTY, queue],
        [(acked, 1)],
        CheckSpec("d", ()),
    )
    last = simulation.leaves[(simulation.points[-1].index, "dropped")]
    where = tmp_path / "check"
    assert judge(recording, simulation, last, Observation("started", state=queue), where) == []
    [lost] = judge(recording, simulation, last, Observation("started", state=EMPTY), where)
    assert lost.what.startswith("lost acknowledged calls") and lost.point == simulation.points[-1].index
    # before the sync completed nothing was acknowledged: an empty start there is a prefix
    before = simulation.leaves[(1, "dropped")]
    assert judge(recording, simulation, before, Observation("started", state=EMPTY), where) == []
    named = Observation("refused", status=1, errors=(f"replay: error: {where}/d/log:1: malformed entry",))
    assert judge(recording, simulation, simulation.leaves[(2, "garbled")], named, where) == []
    [killed] = judge(recording, simulation, last, named, where)  # that tree is also what a kill -9 leaves
    assert "kill -9" in killed.what
    unnamed = Observation("refused", status=1, errors=(), stderr="Traceback (most recent call last):\n  boom")
    found = [violation.what for violation in judge(recording, simulation, before, unnamed, where)]
    assert found[0] == "a traceback on stderr"
    assert found[1] == "a refusal without one `replay: error:` line naming a path"
