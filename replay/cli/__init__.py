"""CLI: the ``replay`` command: parses arguments, runs one command, prints for humans or as JSON (``--json``).
May import every layer (it is the top one, beside the pytest plugin); nothing imports it but ``__main__``.
Entry points: :func:`run` (the console script), :func:`main` (the same, in-process).
"""

from .commands import main as main
from .commands import run as run
