"""The state adapter contract: how an emulator's in-memory state is reached, serialised and put back.

A :class:`StateAdapter` knows the emulator's services and can dump one
service's state to bytes and load such bytes back *in place* (request handlers
hold references to the live objects).  moto's is :mod:`replay.adapters.moto`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..record.entry import Request

__all__ = ["StateAdapter"]


class StateAdapter(Protocol):
    """Dump and restore an emulator's state, one service at a time."""

    def services(self) -> Iterable[str]:
        """The services whose state can be dumped."""
        ...

    def active(self) -> Iterable[str]:
        """The services that may hold state now (a superset is fine; cheap to ask)."""
        ...

    def dump(self, service: str, assets: Path | None = None, data_plane: bool = True) -> bytes:
        """The state of ``service``, serialised; large data may go to files in ``assets``.

        With ``data_plane=False``, without what flows through its resources (messages, objects,
        items, records, log events ...): the resources and their configuration only.  The live
        state is not changed.
        """
        ...

    def prune_assets(self, assets: Path) -> None:
        """Remove what the last :meth:`dump` into ``assets`` no longer refers to; called once that dump is
        durably written (never before: the snapshot on disk may still name those files)."""
        ...

    def load(self, service: str, data: bytes, assets: Path | None = None) -> None:
        """Replace the live state of ``service`` with ``data`` (from :meth:`dump`), in place."""
        ...

    def meta(self) -> dict[str, str]:
        """Versions a snapshot should carry (a newer emulator may not read an older pickle)."""
        ...

    def service_for(self, name: str) -> str | None:
        """The adapter's service for a call classified as service ``name`` (``None``: none of ours)."""
        ...

    def affected(self, service: str) -> frozenset[str]:
        """The services a state-changing call to ``service`` may change (itself included)."""
        ...

    def defer(self, service: str, load: Callable[[], None]) -> bool:
        """Arrange for ``load`` to run before anything reads or changes ``service``'s state, including
        the emulator's own code for another service; ``False``: this adapter cannot (load it now)."""
        ...

    def undefer(self, service: str) -> None:
        """Forget what :meth:`defer` arranged for ``service``."""
        ...

    def reset(self, service: str) -> None:
        """Empty ``service``'s state in place, as a fresh emulator has it (the others are left as they are)."""
        ...

    def watch(self, service: str, operation: str, request: Request) -> Callable[[], bool] | None:
        """For a call whose answer may not show that it changed state (an SQS ``ReceiveMessage``
        that returned nothing), a check to run after it: did it change anything?  Taken before
        the call runs; ``None`` when the adapter has nothing to watch for that call."""
        ...
