"""Storage: the data dir on disk: its lock, signed snapshots, background saves, checkpoints, log rewrites.
May import core, record, compaction and adapters; never restore, share or a layer above them.
Entry points: ``checkpointer.Checkpointer``, ``checkpoint.read_manifest``, ``snapshot``, ``datadir``.
"""
