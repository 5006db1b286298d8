"""Restore: recorded calls reissued into an emulator (seeded, ids mapped, answers compared); lazy loads.
May import core, record, compaction, adapters and storage; never share, backends or a layer above.
Entry points: ``replayer.Replayer``, ``transport.WSGITransport``/``HTTPTransport``, ``lazyload``.
"""
