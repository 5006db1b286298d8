"""The mutation gate: checkpoints wait for calls in flight, calls wait for the capture."""

from __future__ import annotations

import threading
import time

import pytest

from replay.errors import QuiesceTimeoutError
from replay.locks import MutationGate


def test_quiesced_waits_for_calls_in_flight_and_holds_new_ones() -> None:
    gate = MutationGate()
    events: list[str] = []
    gate.enter()  # a call in flight

    def capture() -> None:
        with gate.quiesced(5.0):
            events.append("captured")
            time.sleep(0.05)
            events.append("released")

    def late_call() -> None:
        gate.enter()
        events.append("late call runs")
        gate.leave()

    capturer = threading.Thread(target=capture)
    capturer.start()
    time.sleep(0.05)
    assert events == []  # the capture waits for the call in flight
    caller = threading.Thread(target=late_call)
    caller.start()
    time.sleep(0.05)
    assert events == []  # a new call waits at the closing gate too
    gate.leave()
    capturer.join(5)
    caller.join(5)
    assert events == ["captured", "released", "late call runs"]


def test_quiesced_gives_up_after_its_timeout_and_reopens() -> None:
    gate = MutationGate()
    gate.enter()
    with pytest.raises(QuiesceTimeoutError, match="1 state-changing calls still in flight"), gate.quiesced(0.05):
        pass  # pragma: no cover - never entered
    done = threading.Event()

    def other_call() -> None:
        gate.enter()
        gate.leave()
        done.set()

    threading.Thread(target=other_call).start()
    assert done.wait(2)  # the gate is open again
    gate.leave()
    with gate.quiesced(1.0):
        pass


def test_quiesced_does_not_nest() -> None:
    gate = MutationGate()
    with gate.quiesced(1.0), pytest.raises(RuntimeError), gate.quiesced(1.0):
        pass  # pragma: no cover


def test_a_lock_table_makes_one_lock_per_name_once_whatever_the_threads() -> None:
    import threading

    from replay.locks import LockTable

    made: list[object] = []

    def factory() -> object:
        made.append(object())
        return made[-1]

    table: LockTable[object] = LockTable(factory)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(table["sqs"])) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and all(lock is made[0] for lock in seen)
    assert table["s3"] is not table["sqs"] and len(made) == 2
