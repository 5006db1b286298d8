"""The paths of the control API, named once for the server that answers them and the clients that call them.

LocalStack's own (``/_localstack/...``: health, state save/load/reset) and replay's (``/_replay/...``).
"""

from __future__ import annotations

__all__ = [
    "COMPACT_PATH",
    "CONTROL_ROOTS",
    "EXPORT_PATH",
    "HEALTH_PATH",
    "INFO_PATH",
    "INIT_PATH",
    "REPLAY_INFO_PATH",
    "STATE_PATH",
    "STATE_PREFIX",
]

HEALTH_PATH = "/_localstack/health"
INFO_PATH = "/_localstack/info"
INIT_PATH = "/_localstack/init"
STATE_PATH = "/_localstack/state"
STATE_PREFIX = "/_localstack/state/"
COMPACT_PATH = "/_replay/compact"
EXPORT_PATH = "/_replay/export"
REPLAY_INFO_PATH = "/_replay/info"
CONTROL_ROOTS = ("/_localstack", "/_replay")
"""Paths under these roots are the control API's, never the emulator's."""
