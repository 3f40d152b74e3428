"""Start a local Ray, deploy ``ray_config.yaml`` on it, wait until it answers, drain and shut down.

``edgeserving serve``, the integration tests and the serving benchmark all deploy through here,
with the very config file ``serve run ray_config.yaml`` uses: only the HTTP host/port, the
replica count and chosen application args are overridden.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from scheduler.clock import RealClock
from scheduler.paths import REPO_ROOT
from scheduler.serving.config import ConfigError, parse_config
from scheduler.serving.preflight import preflight

DEFAULT_CONFIG = REPO_ROOT / "ray_config.yaml"
WORKER_DEPLOYMENT = "Worker"
APP_IMPORT_PATH = "scheduler.serving.app:build_app"
_CLOCK = RealClock()  # start-up and drain timeouts
WORKER_NICENESS = 0  # Ray's default for its workers is 15 (see start_ray)
LOCAL_NODE_IP = "127.0.0.1"  # Ray's control plane stays on loopback (see start_ray)


def load_serve_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The Serve config file as a dict, with a clear error when it is not one of ours."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the Serve config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("applications"), list):
        raise ConfigError(f"{path}: expected a Ray Serve config with an 'applications' list")
    worker_app(data, str(path))
    return data


def worker_app(config: dict[str, Any], source: str = "serve config") -> dict[str, Any]:
    """The application entry that runs edgeserving's worker."""
    for app in config["applications"]:
        if app.get("import_path") == APP_IMPORT_PATH:
            return app
    raise ConfigError(f"{source}: no application with import_path {APP_IMPORT_PATH}")


def worker_deployment(app: dict[str, Any]) -> dict[str, Any]:
    for dep in app.setdefault("deployments", []):
        if dep.get("name") == WORKER_DEPLOYMENT:
            return dep
    dep = {"name": WORKER_DEPLOYMENT}
    app["deployments"].append(dep)
    return dep


def prepare(config: dict[str, Any], *, host: str | None = None, port: int | None = None,
            num_replicas: int | None = None, args: dict[str, Any] | None = None,
            base_dir: Path | None = None, demo_zoo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A copy of ``config`` with the overrides applied and the worker args validated.

    With ``demo_zoo`` (a progress callback), a config serving the demo zoo whose committed files are
    missing uses ``models.zoo.ensure_demo_zoo()`` instead (a cached copy, trained and profiled once).
    """
    config = copy.deepcopy(config)
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    app = worker_app(config)
    app_args = dict(app.get("args") or {})
    app_args.update(args or {})
    if base_dir is not None and "base_dir" not in app_args:
        app_args["base_dir"] = str(base_dir)
    cfg = parse_config(app_args, "applications[].args")
    if cfg.missing_files() and demo_zoo is not None and cfg.executor == "torch":
        app_args = use_demo_zoo(app_args, demo_zoo)
        cfg = parse_config(app_args, "applications[].args")
    preflight(cfg)  # missing, corrupt or mismatched files fail here, before Ray starts
    app["args"] = app_args
    if num_replicas is not None:
        worker_deployment(app)["num_replicas"] = num_replicas
    return config


def use_demo_zoo(app_args: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """``app_args`` pointing at a usable demo zoo (committed, cached, or trained now), when every
    served model is a demo-zoo model; unchanged otherwise."""
    from models.zoo import DEMO_MODELS, ensure_demo_zoo

    models = dict(app_args.get("models") or {})
    if not models or not set(models) <= set(DEMO_MODELS):
        return app_args
    zoo = ensure_demo_zoo(log=log)
    log(f"serving the {zoo.source} demo zoo from {zoo.checkpoint_dir}")
    return {**app_args, "profile": str(zoo.profile_path),
            "models": {m: {**(spec or {}), "checkpoint": str(zoo.checkpoint(m))} for m, spec in models.items()}}


def app_name(config: dict[str, Any]) -> str:
    return worker_app(config).get("name", "default")


def http_url(config: dict[str, Any], app: dict[str, Any] | None = None) -> str:
    """Base URL of ``app`` (default: the worker application) on this machine."""
    http = config.get("http_options", {})
    host = http.get("host", "127.0.0.1")
    prefix = ((app or worker_app(config)).get("route_prefix") or "/").rstrip("/")
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{http.get('port', 8000)}{prefix}"


def detect_gpus() -> int:
    """Visible CUDA devices (0 on a machine without one)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def start_ray(num_gpus: int, num_cpus: int | None = None, temp_dir: Path | None = None,
              worker_niceness: int = WORKER_NICENESS, node_ip_address: str = LOCAL_NODE_IP) -> None:
    """A fresh local Ray instance; ``num_gpus`` logical GPUs are declared (at least one).

    Ray's own servers (GCS, raylet, object manager, workers' gRPC, dashboard agent) run code for
    whoever connects, so this single-node instance binds them to ``node_ip_address``, loopback by
    default; left to itself Ray picks the machine's outward address when it finds a route, and
    then several of them listen on every interface. The HTTP API's address is separate
    (``http_options.host``; ``edgeserving serve --host``).

    Ray starts its worker processes (here: the Serve proxy and the worker replicas) at nice 15 by
    default, below every ordinary process; on a shared machine a load generator or any other job
    then takes the CPU first and the server's latency measures its starvation. Serving processes
    are the workload, so they run at ``worker_niceness`` (default 0, like everything else).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    kwargs: dict[str, Any] = {"address": "local", "num_gpus": max(num_gpus, 1), "include_dashboard": False,
                              "logging_level": "WARNING", "log_to_driver": False,
                              "_node_ip_address": node_ip_address,
                              "_system_config": {"worker_niceness": worker_niceness}}
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if temp_dir is not None:
        kwargs["_temp_dir"] = str(temp_dir)
    ray.init(**kwargs)


def deploy(config: dict[str, Any], timeout_s: float = 180.0) -> str:
    """Start Serve with the config's HTTP options, deploy its applications, wait until they all run
    and answer; returns the (first) worker application's base URL."""
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(http_options=schema.http_options.model_dump(),
                                   proxy_location=schema.proxy_location)
    client.deploy_apps(schema, _blocking=False)
    for app in config["applications"]:
        wait_running(app.get("name", "default"), timeout_s)
        if app.get("import_path") == APP_IMPORT_PATH:
            wait_http_ready(http_url(config, app), timeout_s=30.0)
    return http_url(config)


def wait_running(name: str, timeout_s: float) -> None:
    from ray import serve

    deadline = _CLOCK.now() + timeout_s
    status = None
    while _CLOCK.now() < deadline:
        status = serve.status().applications.get(name)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise RuntimeError(f"application {name!r} failed to deploy: {_failure(status)}")
        _CLOCK.sleep(0.25)
    raise TimeoutError(f"application {name!r} not running after {timeout_s:g} s "
                       f"(status {getattr(status, 'status', 'unknown')})")


def _failure(status: Any) -> str:
    parts = [status.message] if status.message else []
    for dep_name, dep in status.deployments.items():
        if dep.message:
            parts.append(f"{dep_name}: {dep.message}")
    text = " | ".join(parts) or str(status.status)
    return text[-3000:]


def wait_http_ready(url: str, timeout_s: float, path: str = "/v2/health/ready") -> None:
    """Poll ``url + path`` until it answers 200, or raise TimeoutError after ``timeout_s``."""
    import httpx

    deadline = _CLOCK.now() + timeout_s
    last = ""
    while _CLOCK.now() < deadline:
        try:
            r = httpx.get(f"{url}{path}", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        _CLOCK.sleep(0.2)
    raise TimeoutError(f"{url}{path} did not answer 200 within {timeout_s:g} s (last: {last})")


def drain(config: dict[str, Any], name: str | None = None, num_replicas: int = 1, timeout_s: float = 30.0) -> bool:
    """Tell every replica of worker application ``name`` (default: the first) to drain through Serve's
    ``user_config``: queued requests end FAILED with reason shutdown and new ones are refused.
    True once its workers answer "not ready"."""
    import httpx
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    drained = copy.deepcopy(config)
    app = next((a for a in drained["applications"] if a.get("name") == name), None) if name else worker_app(drained)
    if app is None:
        raise ValueError(f"no application named {name!r} in the config")
    worker_deployment(app)["user_config"] = {"draining": True}
    client = serve_api.serve_start(http_options=drained.get("http_options", {}))
    client.deploy_apps(ServeDeploySchema.model_validate(drained), _blocking=False)
    url = http_url(drained, app)
    deadline = _CLOCK.now() + timeout_s
    in_a_row = 0
    while _CLOCK.now() < deadline and in_a_row < 2 * num_replicas:
        try:
            in_a_row = in_a_row + 1 if httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 503 else 0
        except httpx.HTTPError:
            in_a_row = 0
        _CLOCK.sleep(0.1)
    return in_a_row >= 2 * num_replicas


def shutdown() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
