"""The replica's names and plans: what a listing says, what a restore reads, what retention may delete."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.errors import ConfigError, ReplicaError
from replay.share.replica import (
    Generation,
    ReplicaLocation,
    SegmentName,
    SnapshotName,
    new_generation_id,
    parse_replica,
    plan_restore,
    plan_retention,
    restore_window,
    scan,
)

SHA = hashlib.sha256(b"x").hexdigest()


def test_locations_parse_with_and_without_a_prefix() -> None:
    assert parse_replica("s3://team-state/ci/main/") == ReplicaLocation("team-state", "ci/main")
    assert parse_replica("s3://team-state") == ReplicaLocation("team-state", "")
    assert str(parse_replica("s3://team-state/a")) == "s3://team-state/a"
    assert ReplicaLocation("b", "").key("replica.json") == "replica.json"
    for bad in ("team-state/x", "http://team-state/x", "s3://", "s3://A_B/x", "s3://ok-bucket/a//b"):
        with pytest.raises(ConfigError):
            parse_replica(bad)


def test_names_round_trip_and_sort_by_number() -> None:
    segment = SegmentName.make(12, 40, 1_700_000_000.123, 1_700_000_001.5, SHA)
    assert SegmentName.parse(segment.name) == segment
    assert segment.name.startswith("000000000012-000000000040-1700000000123-1700000001500-")
    snapshot = SnapshotName.make(40, 1_700_000_002.25, SHA)
    assert SnapshotName.parse(snapshot.name) == snapshot and snapshot.as_of == 1_700_000_002.25
    assert SegmentName.parse("000000000040-000000000012-1700000000123-1700000001500-" + SHA + ".jsonl.gz") is None
    assert SegmentName.parse(segment.name + ".tmp") is None and SnapshotName.parse("x.tar.gz") is None
    names = sorted(SegmentName.make(a, a + 1, 0, 0, SHA).name for a in (100, 9, 10))
    assert [SegmentName.parse(n).after for n in names if SegmentName.parse(n)] == [9, 10, 100]  # type: ignore[union-attr]


def test_scan_sorts_objects_into_generations_and_ignores_strangers() -> None:
    location = ReplicaLocation("b", "p")
    gen = "20261203T120000000Z-0a1b2c3d"
    segment = SegmentName.make(0, 3, 10.0, 12.0, SHA)
    snapshot = SnapshotName.make(3, 13.0, SHA)
    listing = [
        (f"p/generations/{gen}/generation.json", 10, 100.0),
        (f"p/generations/{gen}/segments/{segment.name}", 20, 101.0),
        (f"p/generations/{gen}/snapshots/{snapshot.name}", 30, 102.0),
        (f"p/generations/{gen}/bodies/{segment.bodies}/{SHA}", 40, 103.0),
        (f"p/generations/{gen}/segments/not-a-segment", 1, 104.0),
        ("p/generations/not-a-generation/generation.json", 1, 105.0),
        ("p/replica.json", 1, 106.0),
        ("other/generations/{gen}/generation.json", 1, 107.0),
    ]
    (generation,) = scan(listing, location)
    assert generation.id == gen and generation.has_info
    assert generation.segments == [segment] and generation.snapshots == [snapshot]
    assert generation.bodies == {segment.bodies: [f"generations/{gen}/bodies/{segment.bodies}/{SHA}"]}
    assert generation.size == 101 and generation.last_upload == 104.0
    assert restore_window(generation) == (10.0, 13.0)


def test_generation_names_sort_by_age_even_within_a_millisecond() -> None:
    first = new_generation_id(1_796_300_000.0)
    assert first.startswith("20261203T121320000Z-") and len(first) == len("20261203T120000000Z-0a1b2c3d")
    second = new_generation_id(1_796_300_000.0, after=first)
    earlier_clock = new_generation_id(1_796_299_000.0, after=second)
    assert first < second < earlier_clock


def seg(after: int, last: int, first: float, latest: float) -> SegmentName:
    return SegmentName.make(after, last, first, latest, SHA)


def test_a_restore_takes_the_newest_snapshot_by_then_and_the_segments_after_it() -> None:
    generation = Generation(
        "20261203T120000000Z-00000001",
        snapshots=[SnapshotName.make(5, 20.0, SHA), SnapshotName.make(9, 40.0, SHA)],
        segments=[seg(0, 5, 10, 19), seg(5, 9, 21, 39), seg(9, 12, 41, 50)],
    )
    latest = plan_restore([generation], None, "s3://b/p")
    assert latest.snapshot is not None and latest.snapshot.through == 9 and latest.segments == (seg(9, 12, 41, 50),)
    middle = plan_restore([generation], 30.0, "s3://b/p")
    assert middle.snapshot is not None and middle.snapshot.through == 5
    assert middle.segments == (seg(5, 9, 21, 39), seg(9, 12, 41, 50)) and middle.start == 5
    early = plan_restore([generation], 15.0, "s3://b/p")
    assert early.snapshot is None and early.start == 0 and early.segments[0] == seg(0, 5, 10, 19)
    with pytest.raises(ReplicaError, match="nothing as old as"):
        plan_restore([generation], 5.0, "s3://b/p")
    with pytest.raises(ReplicaError, match="no restore point"):
        plan_restore([Generation("20261203T120000000Z-00000002")], None, "s3://b/p")


def test_overlapping_segments_continue_and_a_gap_ends_the_chain() -> None:
    generation = Generation(
        "20261203T120000000Z-00000001", segments=[seg(0, 4, 1, 2), seg(2, 6, 2, 3), seg(8, 9, 5, 6)]
    )
    used, reached = generation.chain()
    assert used == [seg(0, 4, 1, 2), seg(2, 6, 2, 3)] and reached == 6
    assert generation.gap_after() == 6


def test_a_new_generation_answers_from_when_it_started() -> None:
    old = Generation(new_generation_id(5.0), segments=[seg(0, 10, 10, 100)])
    new = Generation(new_generation_id(150.0), snapshots=[SnapshotName.make(10, 120.0, SHA)])
    assert plan_restore([old, new], None, "w").generation is new
    assert plan_restore([old, new], 149.0, "w").generation is old  # the new one's snapshot is older than it
    assert plan_restore([old, new], 150.0, "w").generation is new
    alone = Generation(new_generation_id(150.0), segments=[seg(0, 3, 10, 20)])  # a data dir replicated late
    assert plan_restore([alone], 15.0, "w").generation is alone


# --- retention, as a property: every restore at or after the cutoff plans the same after pruning ---------------


@st.composite
def replicas(draw: st.DrawFn) -> tuple[list[Generation], float]:
    """Generations as a replicator writes them: times rise with call numbers, snapshots fall on segment ends.

    A generation after the first starts from a checkpoint taken a little before it (a data dir with history).
    """
    generations = []
    clock = 1.0
    for index in range(draw(st.integers(1, 3))):
        clock += draw(st.floats(0.1, 5))
        generation = Generation(new_generation_id(clock, after=generations[-1].id if generations else ""))
        reached = draw(st.integers(0, 20)) if index else 0
        if reached:  # a generation that starts from a checkpoint
            generation.snapshots.append(SnapshotName.make(reached, clock - draw(st.floats(0, 3)), SHA))
        for _ in range(draw(st.integers(0 if reached else 1, 8))):
            first = clock + draw(st.floats(0.01, 3))
            clock = first + draw(st.floats(0, 3))
            count = draw(st.integers(1, 5))
            generation.segments.append(seg(reached, reached + count, first, clock))
            reached += count
            if draw(st.booleans()):
                clock += draw(st.floats(0.001, 1))
                generation.snapshots.append(SnapshotName.make(reached, clock, SHA))
        generations.append(generation)
    return generations, clock


def without(generations: list[Generation], doomed: set[str]) -> list[Generation]:
    kept = []
    for generation in generations:
        copy = Generation(generation.id, has_info=generation.has_info)
        copy.snapshots = [s for s in generation.snapshots if generation.snapshot_key(s) not in doomed]
        copy.segments = [s for s in generation.segments if generation.segment_key(s) not in doomed]
        if copy.snapshots or copy.segments:
            kept.append(copy)
    return kept


def outcome(generations: list[Generation], at: float) -> tuple[str, int, int] | str:
    """Which generation, from which call number, and through which call a restore at ``at`` reads."""
    try:
        plan = plan_restore(generations, at, "w")
    except ReplicaError as exc:
        return str(exc)
    reached = plan.start
    for segment in plan.segments:
        if segment.first_ms / 1000 > at:
            break
        reached = segment.last
    return plan.generation.id, plan.start, reached


@settings(max_examples=300, deadline=None, derandomize=True)
@given(replicas(), st.floats(0, 1), st.lists(st.floats(0, 1), min_size=1, max_size=8))
def test_pruning_keeps_every_restore_point_in_the_window(
    replica: tuple[list[Generation], float], cut: float, points: list[float]
) -> None:
    generations, end = replica
    cutoff = cut * end
    current = generations[-1].id
    doomed = set(plan_retention(generations, cutoff, current))
    pruned = without(generations, doomed)
    assert any(g.id == current for g in pruned) or (not generations[-1].segments and not generations[-1].snapshots)
    for point in points:
        at = cutoff + point * (end + 1 - cutoff)
        assert outcome(pruned, at) == outcome(generations, at), (at, cutoff, sorted(doomed))
    assert outcome(pruned, end + 10) == outcome(generations, end + 10)


def test_pruning_deletes_what_the_window_does_not_need() -> None:
    generation = Generation(
        new_generation_id(1.0),
        snapshots=[SnapshotName.make(5, 20.0, SHA), SnapshotName.make(9, 40.0, SHA)],
        segments=[seg(0, 5, 10, 19), seg(5, 9, 21, 39), seg(9, 12, 41, 50)],
        bodies={"000000000000-000000000005": ["k1"], "000000000009-000000000012": ["k2"]},
    )
    doomed = plan_retention([generation], 45.0, generation.id)
    assert set(doomed) == {
        generation.snapshot_key(SnapshotName.make(5, 20.0, SHA)),
        generation.segment_key(seg(0, 5, 10, 19)),
        generation.segment_key(seg(5, 9, 21, 39)),
        "k1",
    }
    assert plan_retention([generation], 15.0, generation.id) == []  # no snapshot by then: all is needed
    old = Generation(new_generation_id(0.5), segments=[seg(0, 3, 1, 2)], has_info=True)
    assert set(plan_retention([old, generation], 25.0, generation.id)) >= {
        old.key("generation.json"),
        old.segment_key(seg(0, 3, 1, 2)),
    }
    assert not plan_retention([old, generation], 5.0, generation.id)  # a restore at 5 still reads the old one
