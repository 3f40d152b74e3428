"""Live serving on Ray Serve: one worker replica per GPU, each holding every model and one engine.

Submodules are imported lazily by their users: ``config``/``validation``/``responses`` are plain
Python; ``worker`` imports numpy (and torch in ``executor: torch`` mode); ``api``, ``app``,
``router`` and ``deploy`` import Ray.
"""
