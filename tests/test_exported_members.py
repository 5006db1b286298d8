"""The public API is exactly what ``replay.__all__`` says."""

from __future__ import annotations

import replay


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    assert sorted(replay.__all__) == sorted(set(replay.__all__))
    for name in replay.__all__:
        assert hasattr(replay, name), name
    public = {
        name
        for name, value in vars(replay).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("replay")
    }
    assert public <= set(replay.__all__)


def test_errors_share_one_base() -> None:
    errors = [getattr(replay, name) for name in replay.__all__ if name.endswith("Error")]
    assert errors and all(issubclass(error, replay.ReplayError) for error in errors)
