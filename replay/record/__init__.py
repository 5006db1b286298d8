"""Record: a request is read and classified, the app answers, a successful state change is appended to the log.
May import the core modules only (errors, files, config, scope, locks, routes, version).
Entry points: ``middleware.RecordingMiddleware``, ``log.CallLog``, ``reader.LogReader``, ``classify``.
"""
