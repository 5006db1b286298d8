"""Backends: the two persistence strategies (record-and-replay, snapshots) behind one contract, chosen from the config.
May import every layer below (core, record, compaction, adapters, storage, restore, share); never serve or cli.
Entry points: :class:`Backend`, :func:`create_backend`, :class:`~replay.backends.record_replay.RecordReplayBackend`.
"""

from .backend import Backend as Backend
from .backend import DisabledBackend as DisabledBackend
from .backend import create_backend as create_backend

__all__ = ["Backend", "DisabledBackend", "create_backend"]
