"""``python -m replay`` is the ``replay`` command."""

from .cli.commands import run

run()
