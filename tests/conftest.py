"""Shared fixtures: small deterministic profiles, and a real Ray Serve cluster per test module.

A module that needs live serving declares ``SERVE_CLUSTER = {"gpus": N, "apps": {name: spec}}`` and
uses the ``live_cluster`` fixture: one local Ray (N logical GPUs, fresh temp dir, free HTTP port)
deploys ``ray_config.yaml`` with each app's ``args`` overrides, for the whole module. At teardown
it checks the accounting invariant on every app's /metrics: requests in = sum of outcomes, nothing
in flight, every queue empty.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_profile(path: Path, latency_ms: dict[str, dict[str, dict[int, float]]],
                  accuracy: dict[str, dict[str, float]] | None = None) -> Path:
    """A deterministic profile file (every quantile = the given ms)."""
    from scheduler.profile import Profile

    path.write_text(json.dumps(Profile.from_latencies(path.stem, latency_ms, accuracy).to_dict()))
    return path


# Two synthetic models for profile-executor workers: "fast" (a few ms) and "slow" (tens of ms).
SYNTHETIC_LATENCY_MS = {
    "fast": {"e1": {1: 2.0, 4: 3.0}, "e2": {1: 4.0, 4: 6.0}},
    "slow": {"e1": {1: 40.0, 4: 60.0}, "e2": {1: 80.0, 4: 120.0}},
}
SYNTHETIC_MODELS = {
    "fast": {"input_shape": [2, 3], "num_classes": 10, "default_deadline_ms": 100},
    "slow": {"input_shape": [4], "num_classes": 5, "default_deadline_ms": 2000},
}


@pytest.fixture
def synthetic_profile(tmp_path: Path) -> Path:
    return write_profile(tmp_path / "synthetic.json", SYNTHETIC_LATENCY_MS)


@pytest.fixture
def isolated_metrics():
    """Restore prometheus-client's process-wide value class after a test that builds a worker in-process."""
    from prometheus_client import values

    saved_class, saved_env = values.ValueClass, os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    yield
    values.ValueClass = saved_class
    if saved_env is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved_env


# -- live Ray Serve ----------------------------------------------------------------------------------

@dataclass
class LiveApp:
    name: str
    url: str
    replicas: int
    args: dict[str, Any]


@dataclass
class LiveCluster:
    config: dict[str, Any]  # the deployed Serve config
    apps: dict[str, LiveApp]
    tmp: Path
    skip_invariant: set[str] = field(default_factory=set)

    def url(self, app: str) -> str:
        return self.apps[app].url


def build_config(spec: dict[str, Any], port: int, tmp: Path) -> dict[str, Any]:
    """ray_config.yaml with one worker application per entry of ``spec["apps"]``.

    An app spec has ``args`` (worker settings over the shipped ones) and optionally ``replicas``,
    ``num_cpus`` (per replica, to fit several apps on the 2-CPU cluster) and ``import_path`` (a
    test application wrapping the worker, e.g. ``tests.fault_app:build_app``).
    """
    from scheduler.paths import REPO_ROOT
    from scheduler.serving import deploy

    raw = deploy.load_serve_config()
    template = deploy.worker_app(raw)
    apps = []
    for i, (name, app_spec) in enumerate(spec["apps"].items()):
        base = deploy.prepare({"applications": [copy.deepcopy(template)]}, num_replicas=app_spec.get("replicas", 1),
                              args={**app_spec.get("args", {}), "metrics_dir": str(tmp / "metrics" / name)})
        app = base["applications"][0]
        app["name"] = name
        app["route_prefix"] = "/" if i == 0 else f"/{name}"
        if "num_cpus" in app_spec:
            deploy.worker_deployment(app).setdefault("ray_actor_options", {})["num_cpus"] = app_spec["num_cpus"]
        if "import_path" in app_spec:  # importable in the replica wherever pytest was started
            app["import_path"] = app_spec["import_path"]
            app["runtime_env"] = {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}}
        apps.append(app)
    return {**{k: v for k, v in raw.items() if k != "applications"},
            "http_options": {"host": "127.0.0.1", "port": port}, "applications": apps}


@pytest.fixture(scope="module")
def live_cluster(request):
    from scheduler.serving import deploy

    spec = request.module.SERVE_CLUSTER
    tmp = Path(tempfile.mkdtemp(prefix="es-"))  # short: Ray's socket paths must stay under 107 bytes
    port = free_port()
    config = build_config(spec, port, tmp)
    deploy.start_ray(num_gpus=spec.get("gpus", 1), num_cpus=2, temp_dir=tmp / "ray")
    try:
        deploy.deploy(config)
        cluster = LiveCluster(config, {a["name"]: LiveApp(a["name"], deploy.http_url(config, a),
                                                          a["deployments"][0].get("num_replicas", 1), a["args"])
                                       for a in config["applications"]}, tmp)
        yield cluster
        for app in cluster.apps.values():
            if app.name not in cluster.skip_invariant:
                check_accounting(app.url)
    finally:
        with contextlib.suppress(Exception):
            deploy.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def scrape(url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics as ``name{sorted labels}`` -> value."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f"{k}={v}" for k, v in labels.items()]
    return sum(v for k, v in samples.items()
               if k.split("{", 1)[0] == name and all(w in k.split("{", 1)[1].rstrip("}").split(",") for w in want))


def settled_metrics(url: str, timeout_s: float = 20.0, poll_s: float = 0.2) -> dict[str, float]:
    """``scrape(url)`` once every received request has its outcome (or after ``timeout_s``, as it is then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = scrape(url)
        if metric_sum(m, "edgeserving_requests_received_total") == metric_sum(m, "edgeserving_requests_total") \
                or time.monotonic() > deadline:
            return m
        time.sleep(poll_s)


def demo_zoo_args() -> dict[str, Any]:
    """Worker args that point ``ray_config.yaml`` at the demo zoo's cached copy when its committed files are
    missing; empty when the config's own files are there."""
    from scheduler.serving import deploy
    from scheduler.serving.config import parse_config

    args = deploy.worker_app(deploy.load_serve_config())["args"]
    return deploy.use_demo_zoo(args, print) if parse_config(args).missing_files() else {}


def check_accounting(url: str, timeout_s: float = 15.0) -> None:
    """Requests in = sum of outcomes, nothing in flight, every queue empty (waits for quiescence)."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = scrape(url)
        received = metric_sum(m, "edgeserving_requests_received_total")
        outcomes = metric_sum(m, "edgeserving_requests_total")
        inflight = metric_sum(m, "edgeserving_inflight_requests")
        queued = metric_sum(m, "edgeserving_queue_depth")
        if (received == outcomes and inflight == 0 and queued == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert received == outcomes, f"{url}: {received:g} requests in but {outcomes:g} outcomes"
    assert inflight == 0, f"{url}: {inflight:g} requests still in flight"
    assert queued == 0, f"{url}: {queued:g} requests still queued"
