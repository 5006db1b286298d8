"""Share: state leaves and enters a data dir: archives, files or S3, a running server, LocalStack's logs.
May import core, record, compaction, adapters, storage and restore; never backends, serve or cli.
Entry points: ``transfer.export_state``/``import_state``, ``archive``, ``sources.identify``.
"""
