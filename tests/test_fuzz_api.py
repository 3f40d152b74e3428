"""Fuzzing the live API with schemathesis, from the app's own OpenAPI schema (real Ray Serve).

The worker is ``ray_config.yaml`` as shipped (the torch demo zoo). For every operation of
``/openapi.json`` schemathesis generates requests that fit the schema (positive) and, where there
is an input to break, requests that do not (negative): more than 500 in all, derandomized so a
run is reproducible. Every answer must be documented (status code, content type, body schema)
and none may be a 5xx; the worker must still be the same process afterwards; and the server's
count of requests and outcomes must equal what the answers told the client, sample by sample.
"""

from __future__ import annotations

from collections import Counter

import httpx
import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import demo_zoo_args, metric_sum, scrape, settled_metrics

pytestmark = pytest.mark.serve

SERVE_CLUSTER = {"gpus": 1, "apps": {}}  # filled by the fixture (the demo zoo may be the cached copy)
INFER = ("/v1/infer", "/v2/models/{model}/infer")
# Generated requests per operation and mode; operations without inputs yield a handful at most.
BUDGET = {"/v1/infer": 140, "/v2/models/{model}/infer": 140, "/v2/models/{model}": 30}
OTHER_BUDGET = 5
MIN_REQUESTS = 500


@pytest.fixture(scope="module")
def cluster(request):
    SERVE_CLUSTER["apps"] = {"edgeserving": {"args": demo_zoo_args()}}
    return request.getfixturevalue("live_cluster")


def test_schemathesis_finds_no_5xx_and_every_request_has_its_outcome(cluster):
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    url = cluster.url("edgeserving")
    before = scrape(url)
    pids_before = _worker_pids(before)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: Counter = Counter()
    expected_samples = 0  # requests the worker must have counted, from the answers
    session = requests.Session()

    for result in schema.get_all_operations():
        op = result.ok()
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if op.path in BUDGET else [GenerationMode.POSITIVE]
        for mode in modes:
            for status, samples in fuzz_operation(op, mode, url, session, checks):
                statuses[(op.method.upper(), op.path, status)] += 1
                expected_samples += samples

    sent = sum(statuses.values())
    print(f"\nschemathesis: {sent} requests; by status: {dict(sorted(statuses.items()))}")
    assert sent >= MIN_REQUESTS
    assert not [k for k in statuses if k[2] >= 500]
    assert any(k[2] == 200 for k in statuses if k[1] in INFER), "nothing valid reached the models"
    # No crash: the same worker process answers, ready.
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    after = scrape(url)
    assert _worker_pids(after) == pids_before and len(pids_before) == 1
    # The server counted exactly what the answers told the client, and every request has its outcome.
    received = metric_sum(after, "edgeserving_requests_received_total") - \
        metric_sum(before, "edgeserving_requests_received_total")
    outcomes = metric_sum(after, "edgeserving_requests_total") - metric_sum(before, "edgeserving_requests_total")
    assert received == outcomes == expected_samples


def fuzz_operation(op, mode, url: str, session: requests.Session, checks: list) -> list[tuple[int, int]]:
    """Run schemathesis' cases for one operation and mode; (status, requests counted) per call.
    A check that fails raises (hypothesis then shrinks the case and reports it)."""
    calls: list[tuple[int, int]] = []

    @settings(max_examples=BUDGET.get(op.path, OTHER_BUDGET), deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case) -> None:
        response = case.call(base_url=url, session=session, timeout=30)
        calls.append((response.status_code, _samples(response) if op.path in INFER else 0))
        case.validate_response(response, checks=checks)

    fuzz()
    return calls


def _worker_pids(samples: dict[str, float]) -> set[str]:
    return {k.split("pid=", 1)[1].split(",")[0].rstrip("}") for k in samples
            if k.startswith("edgeserving_worker_resident_memory_bytes{")}


def _samples(response) -> int:
    """Requests one infer answer stands for: one per sample of an Open Inference Protocol batch that
    passed validation, else one (a refusal counts once)."""
    try:
        body = response.json()
    except ValueError:
        return 1
    for output in body.get("outputs") or []:
        if output.get("name") == "outcome":
            return len(output["data"])
    return 1


def test_what_fuzzing_found_is_answered_cleanly_over_http(cluster):
    """Bodies that once ended in a 500: nesting past the recursion limit, an integer of thousands of
    digits, a deadline too large for a float, and finite inputs that overflow the network to NaN."""
    url = cluster.url("edgeserving")
    model = httpx.get(f"{url}/v1/models").json()["models"][0]
    name = model["name"].encode()
    cases = [
        (b'{"model": "' + name + b'", "inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", 400, "malformed_json"),
        (b'{"model": "' + name + b'", "inputs": [' + b"9" * 5000 + b"]}", 400, "malformed_json"),
        (b'{"model": "' + name + b'", "inputs": [1], "deadline_ms": 1' + b"0" * 400 + b"}", 422, "bad_deadline"),
    ]
    before = scrape(url)
    for body, status, reason in cases:
        r = httpx.post(f"{url}/v1/infer", content=body, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["reason"]) == (status, reason), r.text[:300]
    huge = np.full(model["input_shape"], 3e38, np.float32)
    r = httpx.post(f"{url}/v1/infer", json={"model": model["name"], "inputs": huge.tolist(), "deadline_ms": 5000})
    assert r.status_code == 200 and r.json()["outcome"] == "MET" and r.json()["confidence"] is None
    after = settled_metrics(url, timeout_s=10.0, poll_s=0.1)
    sent = len(cases) + 1
    assert metric_sum(after, "edgeserving_requests_received_total") - \
        metric_sum(before, "edgeserving_requests_received_total") == sent
    assert metric_sum(after, "edgeserving_requests_total") - metric_sum(before, "edgeserving_requests_total") == sent
