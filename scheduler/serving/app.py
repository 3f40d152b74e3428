"""The application builder ``ray_config.yaml`` names (``import_path: scheduler.serving.app:build_app``).

Serve calls ``build_app(args)`` with the application's ``args``; the config and its files are
checked here first (``preflight``), so a typo, a missing file or a corrupt profile or checkpoint
fails the deployment at once with the key, the file and the problem.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from scheduler.serving.config import parse_config
from scheduler.serving.preflight import preflight


def build_app(args: dict[str, Any]) -> Application:
    from scheduler.serving.api import Worker

    cfg = parse_config(args, "application args")
    preflight(cfg)
    return Worker.bind(cfg.model_dump())
