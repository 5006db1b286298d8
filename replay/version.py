"""The version of ``replay``: written into archives and snapshots, shown by ``--version`` and the health endpoint."""

__version__ = "0.1.0"
