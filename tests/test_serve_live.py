"""Live serving on a real Ray Serve cluster (one per module, two logical GPUs, two applications).

``edgeserving``: ray_config.yaml (the torch demo zoo) with the reference policy at ``/``, whose exit rule
(the deepest exit that meets the deadlines) these tests pin.
``strict``: a profile-executor worker at ``/strict`` with the clockwork policy, infeasible
deadlines refused, a small queue, Bmax 1 and a small payload limit, so every refusal is reachable.
Module teardown checks the accounting of both: requests in = sum of outcomes, queues empty.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from scheduler.client import AsyncEdgeClient, EdgeClient
from scheduler.policies import REFERENCE_POLICY
from tests.conftest import free_port, metric_sum, scrape, write_profile

pytestmark = pytest.mark.serve

SERVE_CLUSTER = {"gpus": 2, "apps": {}}  # filled by the module fixture (it needs a temp dir and the zoo)
STRICT_MS = {"fast": {"e1": {1: 2.0}, "e2": {1: 4.0}}, "slow": {"e1": {1: 200.0}, "e2": {1: 400.0}}}
STRICT_MODELS = {"fast": {"input_shape": [2, 3], "num_classes": 10, "default_deadline_ms": 100},
                 "slow": {"input_shape": [4], "num_classes": 5}}  # no default: a deadline is required


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    from scheduler.serving import deploy

    raw_args = deploy.worker_app(deploy.load_serve_config())["args"]
    main_args = deploy.use_demo_zoo(raw_args, print) if _missing(raw_args) else {}
    main_args["policy"] = REFERENCE_POLICY
    profile = write_profile(tmp_path_factory.mktemp("strict") / "strict.json", STRICT_MS)
    SERVE_CLUSTER["apps"] = {
        "edgeserving": {"args": main_args},
        "strict": {"args": {"executor": "profile", "profile": str(profile), "policy": "clockwork", "bmax": 1,
                            "reject_infeasible": True, "queue_bound": 6, "max_payload_bytes": 4096,
                            "models": STRICT_MODELS}},
    }
    return request.getfixturevalue("live_cluster")


def _missing(args: dict) -> bool:
    from scheduler.serving.config import parse_config

    return bool(parse_config(args).missing_files())


@pytest.fixture(scope="module")
def zoo(cluster) -> dict[str, dict]:
    """The main app's models as GET /v1/models describes them."""
    return {m["name"]: m for m in httpx.get(f"{cluster.url('edgeserving')}/v1/models").json()["models"]}


def sample(model: dict, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(model["input_shape"]).astype(np.float32)


# -- the real models -------------------------------------------------------------------------------------

def test_models_endpoint_describes_the_torch_zoo(zoo):
    assert len(zoo) >= 3
    for m in zoo.values():
        assert m["platform"] == "pytorch" and m["dtype"] == "float32"
        assert set(m["accuracy"]) == set(m["exits"]) == set(m["latency_ms"])
        assert m["default_deadline_ms"] > 0


def test_loose_deadline_is_met_at_the_final_exit_with_the_real_prediction(cluster, zoo):
    from models.checkpoint import load_checkpoint
    from scheduler.serving.config import parse_config

    cfg = parse_config(cluster.apps["edgeserving"].args)
    url = cluster.url("edgeserving")
    for name, m in zoo.items():
        x = sample(m, seed=len(name))
        r = httpx.post(f"{url}/v1/infer", json={"model": name, "inputs": x.tolist(), "deadline_ms": 5000,
                                                "request_id": f"loose-{name}"})
        body = r.json()
        assert r.status_code == 200 and body["outcome"] == "MET" and body["deadline_met"] is True
        assert body["exit"] == m["exits"][-1] and body["request_id"] == f"loose-{name}"
        assert 0 < body["slot_ms"] <= body["latency_ms"] and body["queue_ms"] >= 0
        net, _ = load_checkpoint(cfg.checkpoint_path(name))  # the same weights, run here
        import torch

        with torch.inference_mode():
            expected = int(net(torch.from_numpy(x)[None]).argmax())
        assert body["prediction"] == expected and 0 < body["confidence"] <= 1


def test_impossible_deadline_runs_late_at_the_shallowest_exit_under_the_reference_policy(cluster, zoo):
    name, m = next(iter(zoo.items()))
    r = httpx.post(f"{cluster.url('edgeserving')}/v1/infer", json={"model": name, "inputs": sample(m).tolist()},
                   headers={"X-Request-Deadline-Ms": "0.001"})
    body = r.json()
    assert r.status_code == 200 and body["outcome"] == "LATE" and body["exit"] == m["exits"][0]
    assert body["deadline_ms"] == 0.001 and body["deadline_met"] is False


def test_sync_and_async_clients(cluster, zoo):
    url = cluster.url("edgeserving")
    names = list(zoo)
    with EdgeClient(url) as client:
        assert client.ready() and [m["name"] for m in client.models()] == names
        r = client.infer(names[0], sample(zoo[names[0]]), deadline_ms=5000, request_id="sync-1")
        assert r.outcome == "MET" and r.completed and r.request_id == "sync-1" and r.worker
    before = metric_sum(scrape(url), "edgeserving_request_transit_seconds_count")
    with EdgeClient(url, propagate_deadlines=True) as client:  # the send time goes along: the worker counts it
        assert client.infer(names[0], sample(zoo[names[0]]), deadline_ms=5000).outcome == "MET"
    assert metric_sum(scrape(url), "edgeserving_request_transit_seconds_count") == before + 1

    async def many():
        async with AsyncEdgeClient(url) as client:
            return await asyncio.gather(*(client.infer(names[i % len(names)], sample(zoo[names[i % len(names)]], i),
                                                       deadline_ms=5000) for i in range(24)))

    results = asyncio.run(many())
    assert all(r.completed for r in results)
    assert len({r.request_id for r in results}) == 24
    assert max(r.batch_size for r in results) >= 1


def test_open_inference_protocol(cluster, zoo):
    url = cluster.url("edgeserving")
    name, m = next(iter(zoo.items()))
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json()["ready"] is True
    meta = httpx.get(f"{url}/v2/models/{name}").json()
    assert meta["inputs"][0]["shape"] == [-1, *m["input_shape"]] and meta["platform"] == "pytorch"
    assert httpx.get(f"{url}/v2/models/nope").status_code == 404
    batch = np.stack([sample(m, i) for i in range(3)])
    r = httpx.post(f"{url}/v2/models/{name}/infer", json={
        "id": "oip-1", "parameters": {"deadline_ms": 5000},
        "inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}]})
    body = r.json()
    assert r.status_code == 200 and body["id"] == "oip-1" and body["model_name"] == name
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["prediction"]["shape"] == [3] and outputs["outcome"]["data"] == ["MET"] * 3


def test_openapi_schema_documents_the_api(cluster):
    spec = httpx.get(f"{cluster.url('edgeserving')}/openapi.json").json()
    infer = spec["paths"]["/v1/infer"]["post"]
    body_schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/InferRequest"}
    assert {"200", "400", "404", "413", "422", "500", "503", "504"} <= set(infer["responses"])
    for path in ("/v2/models/{model}/infer", "/v2/models/{model}", "/v2/health/live", "/v2/health/ready",
                 "/v1/models", "/metrics"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert {"InferRequest", "InferResponse", "ErrorResponse", "V2InferRequest", "V2Tensor"} <= set(schemas)
    assert "deadline_ms" in schemas["InferRequest"]["properties"]
    served = [m["name"] for m in httpx.get(f"{cluster.url('edgeserving')}/v1/models").json()["models"]]
    assert schemas["InferRequest"]["properties"]["model"]["enum"] == served


# -- bad input: clear errors, nothing queued, each counted as REJECTED --------------------------------------

def test_bad_input_matrix_is_refused_at_the_edge_and_counted(cluster, zoo):
    url = cluster.url("edgeserving")
    name, m = next(iter(zoo.items()))
    good = sample(m).tolist()
    shape = m["input_shape"]
    cases = [  # (body or raw bytes, headers, status, reason)
        ({"model": "nope", "inputs": good}, {}, 404, "unknown_model"),
        ({"model": name, "inputs": [1.0, 2.0]}, {}, 422, "bad_input"),
        ({"model": name, "inputs": np.zeros([*shape[:-1], shape[-1] + 1]).tolist()}, {}, 422, "bad_input"),
        ({"model": name, "inputs": [["x"] * shape[-1]]}, {}, 422, "bad_input"),
        (b'{"model": "' + name.encode() + b'", "inputs": ' + json.dumps(good).replace("]", ", NaN]", 1).encode()
         + b"}", {}, 422, "bad_input"),
        (b"{not json", {}, 400, "malformed_json"),
        ({"model": name, "inputs": good, "deadline_ms": -1}, {}, 422, "bad_deadline"),
        ({"model": name, "inputs": good, "deadline_ms": 0}, {}, 422, "bad_deadline"),
        ({"model": name, "inputs": good, "deadline_ms": 1e15}, {}, 422, "bad_deadline"),
        (b'{"model": "' + name.encode() + b'", "inputs": ' + json.dumps(good).encode() + b', "deadline_ms": NaN}',
         {}, 422, "bad_deadline"),
        ({"model": name, "inputs": good}, {"X-Request-Deadline-Ms": "soon"}, 422, "bad_deadline"),
    ]
    before = scrape(url)
    for body, headers, status, reason in cases:
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        r = httpx.post(f"{url}/v1/infer", headers={"content-type": "application/json", **headers}, **kw)
        got = r.json()
        assert (r.status_code, got["reason"], got["outcome"]) == (status, reason, "REJECTED"), (body, got)
        if reason == "unknown_model":
            assert got["models"] == list(zoo)
        if reason == "bad_input":
            assert str(shape).replace(" ", "") in got["error"].replace(" ", "") and got["expected_shape"] == shape
    after = scrape(url)
    assert metric_sum(after, "edgeserving_requests_total", outcome="REJECTED") - \
        metric_sum(before, "edgeserving_requests_total", outcome="REJECTED") == len(cases)
    assert metric_sum(after, "edgeserving_slot_seconds_count") == metric_sum(before, "edgeserving_slot_seconds_count")
    ok = httpx.post(f"{url}/v1/infer", json={"model": name, "inputs": good, "deadline_ms": 5000})
    assert ok.json()["outcome"] == "MET"  # the server keeps serving


def test_payload_over_the_limit_is_413_and_a_missing_deadline_422(cluster):
    url = cluster.url("strict")
    r = httpx.post(f"{url}/v1/infer", content=b'{"model": "fast", "inputs": [' + b"1.0, " * 2000 + b"1.0]}",
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["reason"] == "payload_too_large" and "4096" in r.json()["error"]
    r = httpx.post(f"{url}/v1/infer", json={"model": "slow", "inputs": [1, 2, 3, 4]})
    assert r.status_code == 422 and "a deadline is required" in r.json()["error"]


# -- admission and policy outcomes on the strict worker --------------------------------------------------------

def test_infeasible_deadlines_are_rejected_and_hopeless_requests_dropped(cluster):
    url = cluster.url("strict")
    r = httpx.post(f"{url}/v1/infer", json={"model": "slow", "inputs": [1, 2, 3, 4], "deadline_ms": 50})
    assert (r.status_code, r.json()["outcome"], r.json()["reason"]) == (503, "REJECTED", "deadline_infeasible")

    async def burst():  # four 400 ms slots cannot all meet 500 ms: clockwork sheds the rest
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*(c.post(f"{url}/v1/infer", json={
                "model": "slow", "inputs": [1, 2, 3, 4], "deadline_ms": 500}) for _ in range(4)))

    answers = asyncio.run(burst())
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert "DROPPED" in outcomes and "MET" in outcomes
    assert all(a.status_code == 504 for a in answers if a.json()["outcome"] == "DROPPED")


# -- metrics -----------------------------------------------------------------------------------------------------

def test_metrics_count_exactly_the_requests_sent(cluster, zoo):
    url = cluster.url("edgeserving")
    before = metric_sum(scrape(url), "edgeserving_requests_total")
    names = list(zoo)

    async def send():
        async with httpx.AsyncClient(timeout=30) as c:
            singles = [c.post(f"{url}/v1/infer", json={"model": names[i % len(names)],
                                                        "inputs": sample(zoo[names[i % len(names)]], i).tolist()})
                       for i in range(20)]
            batch = np.stack([sample(zoo[names[0]], i) for i in range(4)])
            oip = c.post(f"{url}/v2/models/{names[0]}/infer", json={"inputs": [
                {"name": "x", "shape": list(batch.shape), "datatype": "FP32", "data": batch.tolist()}]})
            bad = c.post(f"{url}/v1/infer", json={"model": "nope", "inputs": [1]})
            return await asyncio.gather(*singles, oip, bad)

    asyncio.run(send())
    sent = 20 + 4 + 1  # a batch of 4 counts 4 requests; a refused call counts one
    deadline = time.monotonic() + 10
    while metric_sum(scrape(url), "edgeserving_requests_total") < before + sent and time.monotonic() < deadline:
        time.sleep(0.1)
    m = scrape(url)
    assert metric_sum(m, "edgeserving_requests_total") == before + sent
    completed = metric_sum(m, "edgeserving_requests_total", outcome="MET") + \
        metric_sum(m, "edgeserving_requests_total", outcome="LATE")
    assert metric_sum(m, "edgeserving_request_latency_seconds_count") == completed
    assert metric_sum(m, "edgeserving_exits_total") == completed
    assert metric_sum(m, "edgeserving_workers") == 1


@pytest.mark.prometheus
def test_a_real_prometheus_scrapes_the_exact_count(cluster, tmp_path: Path):
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.skip("the prometheus binary is not installed (Debian package `prometheus`; .ci/run installs it)")
    url = cluster.url("edgeserving")
    target = url.removeprefix("http://").split("/", 1)[0]
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: edgeserving\n    static_configs: [{{targets: ['{target}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        name, m = next(iter(zoo_of(url).items()))
        for i in range(7):
            httpx.post(f"{url}/v1/infer", json={"model": name, "inputs": sample(m, i).tolist()})
        expected = metric_sum(scrape(url), "edgeserving_requests_total")
        api = f"http://127.0.0.1:{port}/api/v1/query"
        got = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                res = httpx.get(api, params={"query": 'sum(edgeserving_requests_total{job="edgeserving"})'}).json()
                got = float(res["data"]["result"][0]["value"][1]) if res["data"]["result"] else None
            except (httpx.HTTPError, KeyError, ValueError):
                got = None
            if got == expected:
                break
            time.sleep(0.5)
        assert got == expected, f"Prometheus reports {got}, /metrics {expected}"
        # Every query of the shipped Grafana dashboard is valid PromQL on this data.
        dashboard = json.loads((Path(__file__).parents[1] / "deploy" / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for t in panel["targets"]:
                q = httpx.get(api, params={"query": t["expr"].replace("$__rate_interval", "1m")}).json()
                assert q["status"] == "success", (panel["title"], t["expr"], q)
    finally:
        proc.terminate()
        proc.wait(10)


def zoo_of(url: str) -> dict[str, dict]:
    return {m["name"]: m for m in httpx.get(f"{url}/v1/models").json()["models"]}


# -- the command line client ---------------------------------------------------------------------------------

def test_submit_command(cluster, zoo, tmp_path: Path, capsys):
    from scheduler.cli import main

    url = cluster.url("edgeserving")
    name, m = next(iter(zoo.items()))
    assert main(["submit", "--model", name, "--random", "--deadline-ms", "5000", "--url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "MET"
    np.save(tmp_path / "x.npy", sample(m))
    assert main(["submit", "--model", name, "--input", str(tmp_path / "x.npy"), "--url", url,
                 "--deadline-ms", "0.001"]) == 0  # LATE still completes
    assert "LATE" in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", np.zeros(3, np.float32))
    assert main(["submit", "--model", name, "--input", str(tmp_path / "bad.npy"), "--url", url]) == 1
    assert "bad_input" in capsys.readouterr().out


# -- last: draining the strict worker (Ctrl-C of `edgeserving serve` does the same) ---------------------------------

def test_drain_ends_queued_requests_failed_with_reason_shutdown(cluster):
    from scheduler.serving import deploy

    url = cluster.url("strict")

    async def go():
        async with httpx.AsyncClient(timeout=60) as c:
            calls = [asyncio.create_task(c.post(f"{url}/v1/infer", json={
                "model": "slow", "inputs": [1, 2, 3, 4], "deadline_ms": 30_000})) for _ in range(10)]
            await asyncio.sleep(0.3)
            drained = await asyncio.to_thread(deploy.drain, cluster.config, "strict")
            answers = await asyncio.gather(*calls)
            after = await c.post(f"{url}/v1/infer", json={"model": "fast", "inputs": [[1, 2, 3], [4, 5, 6]]})
            return drained, answers, after

    drained, answers, after = asyncio.run(go())
    assert drained
    by = {}
    for a in answers:
        by.setdefault((a.json()["outcome"], a.json()["reason"]), []).append(a.status_code)
    assert ("FAILED", "shutdown") in by, by
    assert set(by) <= {("MET", None), ("FAILED", "shutdown"), ("REJECTED", "queue_full")}, by
    assert set(by[("FAILED", "shutdown")]) == {503}
    assert (after.status_code, after.json()["reason"]) == (503, "shutdown")
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503
