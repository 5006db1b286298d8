"""Serve: an emulator with persistence, over HTTP (``replay serve``) or in-process (``replay.persist``).
May import every layer below it, backends included; never cli.
Entry points: ``server.Server``, ``persist.persist``, ``emulators.load_emulator``, ``endpoints``.
"""
