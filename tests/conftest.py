"""Fixtures shared by the in-process tests that drive moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replay.emulators import Emulator, moto_emulator


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    """moto's server app with its seeder, reset and state adapter (one per test module)."""
    return moto_emulator()


@pytest.fixture
def fresh(emulator: Emulator) -> Iterator[Emulator]:
    """moto, empty before the test and emptied again after it (its state is process-global)."""
    assert emulator.reset is not None
    emulator.reset()
    yield emulator
    emulator.reset()
