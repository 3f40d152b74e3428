"""Direct ingress: a client reaches a worker replica's own HTTP port instead of going through Serve's proxy.

Ray Serve 2.60 can start an HTTP server inside every ingress replica (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``,
ports from 30000 up) beside the proxy, which keeps serving as before. On the 2-core development box the
proxy hop costs a request about 3 ms of CPU and 6-8 ms of latency at idle, the direct port 1-1.5 ms; on
the bundled trace P95 36.3 against 9.7 ms (``edgeserving bench live-ab --a ingress=proxy --b ingress=direct``,
BENCHMARKS.md). What it gives up: Serve's request router
(the slack-aware router picks among workers only on the proxy path), so a client talking to one replica's
port sends all its work there; with several workers, use the proxy or spread the load yourself.

The switch must be on before Ray starts: Serve's controller and replicas read it when they start.
"""

from __future__ import annotations

import os
from typing import Any

from scheduler.clock import RealClock

ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
# A stopping replica keeps its port open this long for a load balancer to deregister it (Serve's default 30 s).
# Nothing sits in front here, and the worker drains its own queue first (``deploy.drain``).
DRAIN_ENV, DRAIN_S = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1"
INGRESS_MODES = ("proxy", "direct")
_CLOCK = RealClock()
_LOOPBACK = ("127.0.0.1", "localhost", "0.0.0.0", "::")


def enable() -> None:
    """Turn direct ingress on for the Ray instance started next in this process."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("direct ingress must be enabled before Ray starts (Serve's controller reads it at start)")
    os.environ[ENV] = "1"
    os.environ.setdefault(DRAIN_ENV, DRAIN_S)


def disable() -> None:
    os.environ.pop(ENV, None)


def enabled() -> bool:
    return os.environ.get(ENV, "0") == "1"


def replica_urls(app_name: str, route_prefix: str, http_host: str, timeout_s: float = 60.0) -> list[str]:
    """Base URLs of the running replicas of ``app_name`` on their own HTTP ports (route prefix included),
    once each answers HTTP; raises when direct ingress is off or no replica shows up within ``timeout_s``."""
    if not enabled():
        raise RuntimeError(f"direct ingress is off ({ENV} was not 1 when Ray started)")
    prefix = "" if route_prefix in ("", "/") else route_prefix.rstrip("/")
    deadline = _CLOCK.now() + timeout_s
    while True:
        urls = [f"http://{_host(http_host, ip)}:{port}{prefix}" for ip, port in _targets(app_name)]
        if urls and all(_answers(u) for u in urls):
            return urls
        if _CLOCK.now() > deadline:
            raise TimeoutError(f"application {app_name!r}: no replica answering on a direct ingress port "
                               f"after {timeout_s:g} s (found {urls or 'none'})")
        _CLOCK.sleep(0.2)


def _targets(app_name: str) -> list[tuple[str, int]]:
    """(node ip, port) of the app's replica HTTP servers, from Serve's controller. Serve has no public call
    for them in 2.60 (``serve status`` lists no ports); target groups are what its HAProxy manager reads."""
    import ray
    from ray.serve.context import _get_global_client

    groups: list[Any] = ray.get(_get_global_client()._controller.get_target_groups.remote(app_name))
    # A group without an ingress deployment is the proxy, which the controller lists while no replica runs.
    return [(t.ip, t.port) for g in groups
            if g.app_name == app_name and g.ingress_deployment_name and str(g.protocol).upper().endswith("HTTP")
            for t in g.targets]


def _host(http_host: str, node_ip: str) -> str:
    # The replica binds the same host as the proxy (``http_options.host``): loopback stays loopback, and a
    # server on every interface is reached here on loopback too; any other host is the node's address.
    return "127.0.0.1" if http_host in _LOOPBACK else node_ip


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url + "/", timeout=2.0)  # any answer (404 included) means the server listens
        return True
    except httpx.HTTPError:
        return False
