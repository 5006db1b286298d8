"""Adapters: how an emulator's in-memory state is listed, serialised and put back in place (moto's is ``moto``).
May import the core modules and ``record`` (the request type); nothing above.
Entry points: :class:`StateAdapter` (the contract), :class:`~replay.adapters.moto.MotoAdapter`.
"""

from .adapter import StateAdapter as StateAdapter

__all__ = ["StateAdapter"]
