"""Faults on a real Ray Serve cluster (one per module, three logical GPUs).

``kill``: two profile-executor worker replicas behind the slack-aware router; one is killed
(``ray.kill`` of its actor) mid-replay. ``torch``: the real torch worker with a fault injected
below validation (``tests/fault_app.py``): one request's tensor is corrupted inside the slot.
Bad start-ups (corrupt profile or checkpoint, a model the profile lacks, a missing file, a
malicious pickle) are deployed beside them and must fail with the key, the file and the problem.
Teardown checks requests in = sum of outcomes with empty queues, across the killed replica too.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from scheduler.paths import REPO_ROOT
from tests.conftest import metric_sum, scrape, settled_metrics, write_profile
from tests.fault_app import POISON
from workloads.generators import generate
from workloads.replay import replay_http

pytestmark = pytest.mark.serve

# Filled by the fixture (temp files, the zoo's paths). The fourth GPU: room for a bad deployment's replica.
SERVE_CLUSTER = {"gpus": 4, "apps": {}}
# "slow" requests carry a far deadline and fill a 600 ms slot on each replica, so the kill surely
# finds some in flight; the slot is short enough not to make the steady "m" traffic late.
KILL_MS = {"m": {"e1": {1: 20.0, 4: 40.0}, "e2": {1: 40.0, 4: 80.0}},
           "slow": {"e1": {1: 300.0, 4: 400.0}, "e2": {1: 500.0, 4: 600.0}}}
KILL_MODELS = {"m": {"input_shape": [4], "num_classes": 5, "default_deadline_ms": 1000},
               "slow": {"input_shape": [4], "num_classes": 5, "default_deadline_ms": 20_000}}
ZOO = REPO_ROOT / "models" / "zoo_artifacts"
TORCH_MODEL = "cnn1d_mnist1d"
PROMPT_S = 2.0  # "promptly": an error this soon after the kill, for requests whose deadline is 20 s away
CLIENT_GRACE_MS = 2000.0  # nobody may wait longer than deadline + this
# A call Serve's proxy re-sends to the survivor after the kill arrives there without its body (it went to
# the victim): the survivor answers 408 body_timeout after this, still "promptly".
BODY_TIMEOUT_MS = 500.0
N_SLOW = 8  # slow requests sent just before the kill


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    from scheduler.serving import deploy

    tmp = tmp_path_factory.mktemp("faults")
    zoo = _zoo_args(deploy)
    SERVE_CLUSTER["apps"] = {
        "kill": {"replicas": 2, "num_cpus": 0.5, "args": {
            "executor": "profile", "profile": str(write_profile(tmp / "kill.json", KILL_MS)), "bmax": 4,
            "models": KILL_MODELS, "body_timeout_ms": BODY_TIMEOUT_MS}},
        "torch": {"num_cpus": 0.5, "import_path": "tests.fault_app:build_app", "args": {
            "profile": zoo["profile"], "bmax": 4, "models": {TORCH_MODEL: zoo["models"][TORCH_MODEL]}}},
    }
    return request.getfixturevalue("live_cluster")


def _zoo_args(deploy) -> dict:
    args = deploy.worker_app(deploy.load_serve_config())["args"]
    from scheduler.serving.config import parse_config

    if parse_config(args).missing_files():
        args = deploy.use_demo_zoo(args, print)
    cfg = parse_config(args)
    return {"profile": str(cfg.profile_path),
            "models": {m: {"checkpoint": str(cfg.checkpoint_path(m)), "default_deadline_ms": 1000}
                       for m in cfg.models}}


# -- a fault inside one slot --------------------------------------------------------------------------------

def test_a_bad_tensor_below_validation_fails_only_its_slot_and_the_engine_goes_on(cluster):
    url = cluster.url("torch")
    shape = httpx.get(f"{url}/v1/models").json()["models"][0]["input_shape"]
    rng = np.random.default_rng(3)
    samples = [rng.standard_normal(shape).astype(np.float32) for _ in range(12)]
    samples[5].flat[0] = POISON

    async def burst():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*(c.post(f"{url}/v1/infer", json={
                "model": TORCH_MODEL, "inputs": x.tolist(), "deadline_ms": 5000, "request_id": f"r{i}"})
                for i, x in enumerate(samples)))

    answers = [a.json() for a in asyncio.run(burst())]
    failed = [a for a in answers if a["outcome"] == "FAILED"]
    poisoned = answers[5]
    assert poisoned["outcome"] == "FAILED" and poisoned["reason"].startswith("slot_failed: ")
    # Exactly the poisoned request's slot failed: its batch, no more.
    assert len(failed) == poisoned["batch_size"] and all(a["batch_size"] == len(failed) for a in failed)
    assert all(a["reason"] == poisoned["reason"] for a in failed)
    assert all(a["outcome"] == "MET" for a in answers if a["outcome"] != "FAILED")
    r = httpx.post(f"{url}/v1/infer", json={"model": TORCH_MODEL, "inputs": samples[0].tolist(), "deadline_ms": 5000})
    assert r.status_code == 200 and r.json()["outcome"] == "MET"  # the engine goes on
    m = scrape(url)
    assert metric_sum(m, "edgeserving_failed_slots_total") == 1
    assert metric_sum(m, "edgeserving_requests_total", outcome="FAILED", reason="slot_failed") == len(failed)


# -- bad start-ups ----------------------------------------------------------------------------------------

def bad_copy(src: dict, d: Path) -> Path:
    """A copy of one zoo checkpoint (JSON + weights) and the profile in ``d``, to corrupt one way."""
    d.mkdir()
    ckpt = Path(src["models"][TORCH_MODEL]["checkpoint"])
    shutil.copy(ckpt, d / ckpt.name)
    shutil.copy(ckpt.with_suffix(".pt"), d / ckpt.with_suffix(".pt").name)
    shutil.copy(src["profile"], d / "profile.json")
    return d


def bad_args(d: Path, **models) -> dict:
    return {"profile": str(d / "profile.json"), "bmax": 4,
            "models": models or {TORCH_MODEL: {"checkpoint": str(d / f"{TORCH_MODEL}.json"),
                                               "default_deadline_ms": 100}}}


def deploy_bad(cluster, bad: dict[str, dict]) -> dict[str, str]:
    """Deploy the worker applications ``bad`` (name -> args) beside the module's, all at once (Serve
    builds them in parallel); each one's failure message. The module's applications stay up."""
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    from scheduler.serving import deploy

    config = copy.deepcopy(cluster.config)
    for name, args in bad.items():
        app = copy.deepcopy(config["applications"][0])
        app.update(name=name, route_prefix=f"/{name}", import_path=deploy.APP_IMPORT_PATH, args=args)
        app.pop("runtime_env", None)
        worker = deploy.worker_deployment(app)
        worker["num_replicas"] = 1  # Serve gives up after three failed starts of it
        worker.setdefault("ray_actor_options", {})["num_cpus"] = 0.1
        config["applications"].append(app)
    client = serve_api.serve_start(http_options=config["http_options"])
    messages = {}
    try:
        client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)
        for name in bad:
            with pytest.raises(RuntimeError) as info:
                deploy.wait_running(name, timeout_s=180)
            messages[name] = str(info.value)
    finally:  # the module's applications only, again
        client.deploy_apps(ServeDeploySchema.model_validate(cluster.config), _blocking=False)
        for app in cluster.apps:
            deploy.wait_running(app, timeout_s=120)
    return messages


def test_bad_start_ups_fail_naming_the_key_the_file_and_the_problem(cluster, tmp_path):
    """Four problems the controller's preflight catches (a corrupt profile, truncated weights, a model
    the profile lacks, a missing checkpoint), and one only the replica can: weights that pass the
    checksum but are a pickle with code in it, which ``torch.load(weights_only=True)`` refuses, so
    the deployment fails and the code never runs."""
    import hashlib
    import pickle

    from scheduler.serving import deploy

    zoo = _zoo_args(deploy)
    corrupt_profile = bad_copy(zoo, tmp_path / "profile")
    (corrupt_profile / "profile.json").write_text('{"models": {"x": ')
    truncated = bad_copy(zoo, tmp_path / "truncated")
    weights = truncated / f"{TORCH_MODEL}.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    plain = bad_copy(zoo, tmp_path / "plain")
    evil = bad_copy(zoo, tmp_path / "evil")
    marker = tmp_path / "pwned"
    (evil / f"{TORCH_MODEL}.pt").write_bytes(pickle.dumps(_Exploit(str(marker))))
    meta = json.loads((evil / f"{TORCH_MODEL}.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((evil / f"{TORCH_MODEL}.pt").read_bytes()).hexdigest()
    (evil / f"{TORCH_MODEL}.json").write_text(json.dumps(meta))

    messages = deploy_bad(cluster, {
        "bad-profile": bad_args(corrupt_profile),
        "bad-weights": bad_args(truncated),
        "bad-model": bad_args(plain, nope={"checkpoint": str(plain / f"{TORCH_MODEL}.json")}),
        "bad-path": bad_args(plain, **{TORCH_MODEL: {"checkpoint": str(plain / "missing.json")}}),
        "bad-pickle": bad_args(evil),
    })
    expected = {
        "bad-profile": f"profile: {corrupt_profile / 'profile.json'}: not valid JSON",
        "bad-weights": f"models.{TORCH_MODEL}.checkpoint: {weights}: corrupt weights: SHA-256 differs",
        "bad-model": f"models.nope: not in the profile {plain / 'profile.json'} (it has ['{TORCH_MODEL}'",
        "bad-path": f"missing file(s): models.{TORCH_MODEL}.checkpoint: {plain / 'missing.json'}",
        "bad-pickle": f"models.{TORCH_MODEL}.checkpoint: {evil / f'{TORCH_MODEL}.pt'}: corrupt weights, "
                      "not a state_dict",
    }
    for name, text in expected.items():
        assert text in messages[name], messages[name][-2000:]
    assert not marker.exists()


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _serve_log_lines(tmp: Path, ids: list[str], limit: int = 40) -> list[str]:
    """The lines of the cluster's Serve logs (proxy, replicas) that name one of ``ids``."""
    lines = []
    for log in sorted((tmp / "ray").glob("session_*/logs/serve/*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(i in line for i in ids):
                lines.append(f"{log.name}: {line[:300]}")
    return lines[-limit:]


def test_the_module_apps_still_serve_after_the_bad_deployments(cluster):
    for app in ("kill", "torch"):
        assert httpx.get(f"{cluster.url(app)}/v2/health/ready").status_code == 200


# -- a replica killed mid-replay (last: it leaves a replaced replica behind) ------------------------------

def test_a_killed_replica_fails_its_requests_promptly_and_serve_replaces_it(cluster):
    import ray

    url = cluster.url("kill")
    replicas = _replicas("kill")
    assert len(replicas) == 2
    rows = generate("poisson", {"m": 20.0}, [(1000.0, 1.0)], 8.0, np.random.default_rng(4))
    slow: list[dict] = []

    def one_slow(i: int) -> None:
        try:
            # X-Request-Id: Serve's own logs name the request by it (see _serve_log_lines).
            r = httpx.post(f"{url}/v1/infer", json={"model": "slow", "inputs": [1, 2, 3, 4], "deadline_ms": 20_000,
                                                    "request_id": f"slow-{i}"},
                           headers={"X-Request-Id": f"slow-{i}"}, timeout=60)
            slow.append({"id": f"slow-{i}", "status": r.status_code, "done_s": time.perf_counter(),
                         "outcome": _outcome(r), "reason": _outcome(r, "reason")})
        except httpx.HTTPError as exc:  # a transport error is an error too, as long as it is prompt
            slow.append({"id": f"slow-{i}", "status": 599, "done_s": time.perf_counter(),
                         "outcome": type(exc).__name__, "reason": None})

    with ThreadPoolExecutor(max_workers=12) as pool:
        zero_s = time.perf_counter()  # the replay's time zero is at most its set-up time later
        replay = pool.submit(replay_http, rows, url, grace_ms=CLIENT_GRACE_MS)
        time.sleep(1.5)
        for i in range(N_SLOW):
            pool.submit(one_slow, i)
        busy = _open_once_slow_arrive(replicas, N_SLOW)
        victim = max(busy, key=busy.get)
        kill_s = time.perf_counter()
        ray.kill(replicas[victim], no_restart=True)
        report = replay.result(timeout=120)
    assert len(slow) == N_SLOW

    # In flight on the victim: an error within PROMPT_S of the kill, nowhere near the 20 s deadline. A
    # call still in Serve's proxy at the kill is re-sent to the survivor without its body: 408 body_timeout
    # (before the bound, in 2 of 4 full-suite runs one hung there until the client's 60 s timeout).
    resent = [s for s in slow if s["status"] == 408 and s["reason"] == "body_timeout"]
    errors = [s for s in slow if s["status"] >= 500]
    assert len(errors) >= 1, (busy, victim, [(s["id"], s["status"], s["reason"], round(s["done_s"] - kill_s, 2))
                                             for s in slow])
    late = [s for s in errors + resent if s["done_s"] - kill_s > PROMPT_S]
    if late:  # what Serve logged about them is in the message, for whoever meets it next
        print("\n".join(_serve_log_lines(cluster.tmp, [s["id"] for s in late])))  # shown with the failure
    assert not late, [round(s["done_s"] - kill_s, 2) for s in errors + resent]
    assert all(s["outcome"] == "MET" for s in slow if s["status"] < 500 and s not in resent), slow
    # The replay: every request answered, none waited past its deadline plus the grace, only requests in
    # flight at the kill failed, and the survivor kept serving.
    results = report.results
    kill_at_s = kill_s - zero_s  # on the trace's clock, give or take the replay's set-up (< 0.5 s)
    for r in results:
        if r.outcome.value != "MET":
            print(f"{r.request.arrival_s - kill_at_s:+.2f} s {r.outcome.value} {r.reason}")
    assert not [r for r in results if (r.reason or "").startswith("client_timeout")]
    failed = [r for r in results if r.outcome.value == "FAILED"]
    assert all(r.request.arrival_s <= kill_at_s + 0.5 for r in failed), \
        [(round(r.request.arrival_s - kill_at_s, 2), r.reason) for r in failed]
    after_kill = [r for r in results if r.request.arrival_s > kill_at_s + 0.5]
    assert sum(r.outcome.value == "MET" for r in after_kill) >= 0.9 * len(after_kill)

    # Serve restarts the replica and service recovers on both.
    new = _wait_replaced("kill", set(replicas), timeout_s=90)
    print(f"\nkill: {len(errors)} in-flight slow requests failed within "
          f"{max(s['done_s'] - kill_s for s in errors):.2f} s, {len(resent)} re-sent without a body answered 408; "
          f"replay {Counter(r.outcome.value for r in results)}; "
          f"replacement {new} up {time.perf_counter() - kill_s:.1f} s after the kill")
    seen = set()
    deadline = time.monotonic() + 30
    while new not in seen and time.monotonic() < deadline:
        r = httpx.post(f"{url}/v1/infer", json={"model": "m", "inputs": [1, 2, 3, 4]})
        assert r.json()["outcome"] == "MET"
        seen.add(r.headers["x-edgeserving-worker"])
    assert any(new.endswith(w) for w in seen), (new, seen)

    # What the dead replica held is accounted as FAILED/worker_lost: the server's count of lost requests
    # is at most what the clients saw fail, and not always all of it: a request the router had already
    # sent to the victim can die on its way into the replica before the worker counts it in (one of three
    # did in a CI run), so the clients' errors are no lower bound; but the victim held slow requests it had
    # counted in (it was chosen as the replica with the most queued), so at least one is lost.
    m = settled_metrics(url)
    lost = metric_sum(m, "edgeserving_requests_total", outcome="FAILED", reason="worker_lost")
    client_5xx = len(errors) + sum(1 for r in failed if "http_5" in (r.reason or ""))
    assert 1 <= lost <= client_5xx, (lost, len(errors), client_5xx)
    assert metric_sum(m, "edgeserving_requests_received_total") == metric_sum(m, "edgeserving_requests_total")


def _open_once_slow_arrive(replicas: dict, n_slow: int, timeout_s: float = 10.0) -> dict[str, int]:
    """Open requests per replica once the ``n_slow`` slow ones (600 ms slots) are inside the replicas: a
    fixed sleep was too short on a loaded box (the kill then found them still in the proxy, which sent
    them all to the survivor: nothing in flight on the victim)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        busy = {name: ray.get(h.record_routing_stats.remote())["queued"] for name, h in replicas.items()}
        if sum(busy.values()) >= n_slow or time.monotonic() > deadline:
            return busy
        time.sleep(0.02)


def _outcome(r: httpx.Response, field: str = "outcome") -> str | None:
    try:
        return r.json().get(field)
    except ValueError:
        return None


def _replicas(app: str) -> dict:
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith(f"SERVE_REPLICA::{app}#")]
    return {n: ray.get_actor(n, namespace="serve") for n in names}


def _wait_replaced(app: str, old: set[str], timeout_s: float) -> str:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(_replicas(app)) - old
        status = serve.status().applications[app]
        if new and status.status == "RUNNING" and \
                status.deployments["Worker"].replica_states.get("RUNNING", 0) == 2:
            return new.pop().rsplit("#", 1)[1]
        time.sleep(0.25)
    raise AssertionError(f"Serve did not replace the killed replica of {app!r} within {timeout_s:g} s")
