"""Serve's direct ingress: requests reach each replica's own HTTP port, the proxy keeps working beside it.

One real local Ray Serve for the module (``LiveHarness(ingress="direct")``): the edgeserving worker and
the plain baseline, both replayed on their replicas' ports, every request answered once and counted.
"""

from __future__ import annotations

import os

import httpx
import pytest

from bench.plain_batched import Batching
from scheduler.serving import ingress
from scheduler.types import Outcome


def test_an_unknown_ingress_mode_is_refused_before_ray_starts():
    from bench.live_harness import LiveHarness

    with pytest.raises(ValueError, match="ingress must be one of proxy, direct"):
        LiveHarness(ingress="haproxy")
    assert os.environ.get(ingress.ENV) is None


def test_a_replica_on_loopback_or_every_interface_is_reached_on_loopback():
    assert ingress._host("127.0.0.1", "10.0.0.5") == "127.0.0.1"
    assert ingress._host("0.0.0.0", "10.0.0.5") == "127.0.0.1"
    assert ingress._host("10.0.0.5", "10.0.0.5") == "10.0.0.5"


@pytest.fixture(scope="module")
def direct():
    from bench.live_harness import LiveHarness

    with LiveHarness(gpus=2, ingress="direct") as h:
        yield h
    assert os.environ.get(ingress.ENV) is None  # the next Ray this process starts decides afresh


@pytest.mark.serve
def test_requests_reach_the_replicas_own_ports_and_the_proxy_still_answers(direct):
    from bench.live_harness import metric_total
    from bench.live_workload import generate_rows
    from tests.conftest import check_accounting

    with pytest.raises(RuntimeError, match="before Ray starts"):
        ingress.enable()
    edge = direct.deploy_edgeserving("edgeserving", "lookahead")
    plain = direct.deploy_plain(Batching(4, 0.001))
    proxy = f"http://127.0.0.1:{direct.port}"
    assert not edge.url.startswith(proxy) and not plain.url.startswith(proxy)
    assert all(p.startswith("http://127.0.0.1:") and not p.startswith(proxy) for p in plain.paths.values())
    assert len(set(plain.paths.values()) | {plain.url, edge.url}) == 2 + len(plain.paths)  # a port each

    rows = generate_rows(20.0, 1.0, seed=5)  # ~20 requests
    for target in (edge, plain):
        report = direct.replay(target, rows)
        assert [r.request.id for r in report.results] == [r.request_id for r in rows], target.label
        assert all(r.outcome in (Outcome.MET, Outcome.LATE) for r in report.results), target.label
    assert metric_total(direct.scrape(edge), "edgeserving_requests_received_total") == len(rows)
    check_accounting(edge.url)
    # Every replica's own port listens on loopback only, as the proxy does (SECURITY.md).
    from tests.test_security_live import LOOPBACK, descendants, listening

    ports = {int(u.split(":")[2].split("/")[0]) for u in [edge.url, plain.url, *plain.paths.values()]}
    found = [s for s in listening(descendants(os.getpid())) if s[1] in ports]
    assert {s[1] for s in found} == ports and all(s[0] in LOOPBACK for s in found), found
    # The proxy path serves the same worker, and counts into the same metrics.
    models = httpx.get(f"{proxy}/v1/models", timeout=10).json()["models"]
    assert {m["name"] for m in models} == set(plain.paths)


@pytest.mark.serve
def test_a_redeployed_worker_is_found_where_it_now_listens(direct):
    before = direct.deploy_edgeserving("edgeserving", "lookahead")
    after = direct.deploy_edgeserving("edgeserving", "edgeserving")  # new args: Serve starts a new replica
    assert direct.current(before) == after
    assert httpx.get(f"{after.url}/v1/models", timeout=10).status_code == 200
