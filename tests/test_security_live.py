"""Security on a real Ray Serve cluster serving ``ray_config.yaml`` as shipped (the torch demo zoo).

- Nothing listens beyond loopback: the HTTP proxy and every Ray server of the cluster (GCS,
  raylet, object manager, workers, agents) bind 127.0.0.1, except the one socket Ray Serve
  itself opens on every interface (a replica's inter-deployment gRPC server), pinned here so that
  any new exposure fails.
- Network data is never unpickled: a pickle sent as the body is refused as malformed JSON and
  its payload never runs; a BYTES tensor is refused.
- The payload and batch limits hold over HTTP, for declared and for chunked bodies.
- No secrets in logs: credentials in headers, and secrets inside refused bodies, appear in none
  of the cluster's log files, which do hold the worker's own lines.
Teardown checks requests in = sum of outcomes with empty queues.
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import demo_zoo_args, metric_sum, scrape, settled_metrics

pytestmark = pytest.mark.serve

SERVE_CLUSTER = {"gpus": 1, "apps": {}}  # filled by the fixture (the demo zoo may be the cached copy)
SECRET = "s3cr3t-7c1e9a55-do-not-log"


@pytest.fixture(scope="module")
def cluster(request):
    SERVE_CLUSTER["apps"] = {"edgeserving": {"args": demo_zoo_args()}}
    return request.getfixturevalue("live_cluster")


@pytest.fixture(scope="module")
def model(cluster) -> dict:
    return httpx.get(f"{cluster.url('edgeserving')}/v1/models").json()["models"][0]


# -- listening sockets ----------------------------------------------------------------------------------

def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo.extend(children.get(pid, []))
    return out


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state owned by ``pids``."""
    by_inode: dict[str, tuple[str, int]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            by_inode[fields[9]] = (_address(addr_hex, width), int(port_hex, 16))
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = target[8:-1] if target.startswith("socket:[") else None
            if inode in by_inode:
                out.append((*by_inode[inode], pid))
    return out


def _address(hex_addr: str, width: int) -> str:
    raw = bytes.fromhex(hex_addr)
    # /proc prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, words)
    return socket.inet_ntop(socket.AF_INET6, words)


LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_nothing_of_the_cluster_listens_beyond_loopback(cluster):
    port = int(cluster.url("edgeserving").rsplit(":", 1)[1].split("/")[0])
    sockets = listening(descendants(os.getpid()))
    assert any(p == port for _, p, _ in sockets), "the HTTP proxy's socket was not found"
    assert len({pid for *_, pid in sockets}) >= 4  # proxy, controller, replica, raylet, GCS ... all seen
    exposed = [s for s in sockets if s[0] not in LOOPBACK]
    # The one exception, Ray Serve's own: each replica's inter-deployment gRPC server, which Ray
    # Serve 2.60 binds to [::]:0 unconditionally (replica.py). SECURITY.md says how to fence it.
    replica_grpc = [s for s in exposed if s[0] == "::" and _cmdline(s[2]).startswith("ray::ServeReplica")]
    assert len(replica_grpc) == len({s[2] for s in replica_grpc}) == 1, exposed
    assert not [s for s in exposed if s not in replica_grpc], exposed


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")


# -- no unpickling ----------------------------------------------------------------------------------------

class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pickled_body_is_refused_and_never_runs(cluster, model, tmp_path):
    url = cluster.url("edgeserving")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    for content_type in ("application/octet-stream", "application/python-pickle", "application/json"):
        for path in ("/v1/infer", f"/v2/models/{model['name']}/infer"):
            r = httpx.post(f"{url}{path}", content=payload, headers={"content-type": content_type})
            assert (r.status_code, r.json()["reason"]) == (400, "malformed_json"), r.text
    r = httpx.post(f"{url}/v2/models/{model['name']}/infer", json={"inputs": [
        {"name": "x", "shape": [1], "datatype": "BYTES", "data": [payload.hex()]}]})
    assert r.status_code == 422 and "not numeric" in r.json()["error"]
    assert not marker.exists()


# -- payload and batch limits -------------------------------------------------------------------------------

def test_payload_and_batch_limits_hold_over_http(cluster, model):
    from scheduler.serving.config import parse_config

    cfg = parse_config(cluster.apps["edgeserving"].args)
    url = cluster.url("edgeserving")
    big = b'{"model": "' + model["name"].encode() + b'", "inputs": [' + b"0.0, " * (cfg.max_payload_bytes // 5) + b"0]}"
    r = httpx.post(f"{url}/v1/infer", content=big, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["reason"]) == (413, "payload_too_large")

    def chunks():  # no content-length: the worker counts while it reads
        for i in range(0, len(big), 64 * 1024):
            yield big[i:i + 64 * 1024]

    r = httpx.post(f"{url}/v1/infer", content=chunks(), headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["reason"]) == (413, "payload_too_large")
    n = cfg.max_samples_per_request + 1
    batch = np.zeros([n, *model["input_shape"]], np.float32)
    r = httpx.post(f"{url}/v2/models/{model['name']}/infer", json={"inputs": [
        {"name": "x", "shape": list(batch.shape), "datatype": "FP32", "data": batch.ravel().tolist()}]})
    assert r.status_code == 422 and f"exceeds the limit of {cfg.max_samples_per_request}" in r.json()["error"]
    ok = httpx.post(f"{url}/v1/infer", json={"model": model["name"], "inputs": batch[0].tolist()})
    assert ok.status_code == 200  # still serving


def test_a_stalled_body_is_answered_408_after_the_body_timeout(cluster, model):
    """A client that sends its headers and part of its body, then stalls, gets 408 body_timeout once
    ``body_timeout_ms`` has passed (through Serve's proxy), and is counted as one REJECTED request."""
    from scheduler.serving.config import parse_config

    timeout_s = parse_config(cluster.apps["edgeserving"].args).body_timeout_ms / 1000
    url = httpx.URL(cluster.url("edgeserving"))
    before = metric_sum(scrape(str(url)), "edgeserving_requests_total", outcome="REJECTED", reason="body_timeout")
    part = b'{"model": "' + model["name"].encode() + b'", "inputs": ['
    conn = http.client.HTTPConnection(url.host, url.port, timeout=timeout_s + 20)
    conn.putrequest("POST", f"{url.path.rstrip('/')}/v1/infer")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(part) + 100))
    start_s = time.monotonic()
    conn.endheaders(message_body=part)  # ... and the other 100 bytes never come
    answer = conn.getresponse()
    waited_s = time.monotonic() - start_s
    body = json.loads(answer.read())
    conn.close()
    assert answer.status == 408, body
    assert (body["outcome"], body["reason"]) == ("REJECTED", "body_timeout") and "arrived" in body["error"]
    assert timeout_s <= waited_s < timeout_s + 5, waited_s
    after = metric_sum(settled_metrics(str(url)), "edgeserving_requests_total", outcome="REJECTED",
                       reason="body_timeout")
    assert after == before + 1


# -- logs ------------------------------------------------------------------------------------------------------

def test_no_secret_reaches_the_logs(cluster, model):
    url = cluster.url("edgeserving")
    good = np.zeros(model["input_shape"], np.float32).tolist()
    headers = {"Authorization": f"Bearer {SECRET}", "Cookie": f"session={SECRET}", "X-Api-Key": SECRET,
               "Proxy-Authorization": f"Basic {SECRET}"}
    sent = [
        httpx.post(f"{url}/v1/infer", json={"model": model["name"], "inputs": good}, headers=headers),
        httpx.post(f"{url}/v1/infer", content=f'{{"model": "{model["name"]}", "password": "{SECRET}"'.encode(),
                   headers={**headers, "content-type": "application/json"}),
        httpx.post(f"{url}/v1/infer", json={"model": SECRET, "inputs": good}, headers=headers),
        httpx.post(f"{url}/v1/infer", json={"model": model["name"], "inputs": [[SECRET]]}, headers=headers),
        httpx.post(f"{url}/v1/infer", json={"model": model["name"], "inputs": good, "token": SECRET}),
        httpx.get(f"{url}/v2/models/{SECRET}", headers=headers),
        httpx.get(f"{url}/v2/health/live", params={"api_key": SECRET}, headers=headers),
    ]
    assert [r.status_code for r in sent] == [200, 400, 404, 422, 422, 404, 200]
    logs = [p for p in cluster.tmp.rglob("*") if p.is_file() and "/logs/" in str(p)]
    text = {p: p.read_bytes() for p in logs}
    assert any(b"serving [" in t for t in text.values()), "the worker's own log lines were not found"
    leaked = [str(p) for p, t in text.items() if SECRET.encode() in t]
    assert not leaked, leaked
