"""``edgeserving serve`` end to end: start, answer, Ctrl-C drains (queued requests end FAILED with
reason shutdown, every request is answered), then Ray and Serve stop and the command exits 0. It runs
with ``--direct-ingress``: the worker answers on its own port too, and the proxy keeps serving beside it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import SYNTHETIC_MODELS, free_port, write_profile

pytestmark = [pytest.mark.serve, pytest.mark.slow]


def test_serve_until_ctrl_c_then_drain_and_exit(tmp_path: Path):
    from scheduler.serving.deploy import DEFAULT_CONFIG

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    profile = write_profile(tmp_path / "p.json", {"fast": {"e1": {1: 2.0}, "e2": {1: 4.0}},
                                                  "slow": {"e1": {1: 150.0}, "e2": {1: 300.0}}})
    config["applications"][0]["args"] = {"executor": "profile", "profile": str(profile), "bmax": 1,
                                         "models": SYNTHETIC_MODELS, "metrics_dir": str(tmp_path / "metrics")}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="es-cli-")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "scheduler.cli", "serve", "--config", str(tmp_path / "serve.yaml"),
                             "--port", str(port), "--direct-ingress", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not any("press Ctrl-C" in ln for ln in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "serve did not come up:\n" + "".join(lines)
            time.sleep(0.2)
        assert httpx.post(f"{url}/v1/infer", json={"model": "fast", "inputs": [[1, 2, 3], [4, 5, 6]]}).json()[
            "outcome"] == "MET"
        direct = next(ln for ln in lines if "direct ingress" in ln).split()[-1]
        assert direct.startswith("http://127.0.0.1:") and direct != url, direct
        assert httpx.post(f"{direct}/v1/infer", json={"model": "fast", "inputs": [[1, 2, 3], [4, 5, 6]]}).json()[
            "outcome"] == "MET"
        answers: list[dict] = []

        def slow() -> None:
            r = httpx.post(f"{url}/v1/infer", json={"model": "slow", "inputs": [1, 2, 3, 4], "deadline_ms": 30_000},
                           timeout=60)
            answers.append({"status": r.status_code, **r.json()})

        senders = [threading.Thread(target=slow) for _ in range(6)]
        for t in senders:
            t.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal sends
        assert proc.wait(90) == 0, "".join(lines)
        for t in senders:
            t.join(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = "".join(lines)
    assert "draining" in out and "shutting down Serve and Ray" in out
    assert len(answers) == 6, "every request gets an answer"
    kinds = {(a["outcome"], a["reason"]) for a in answers}
    assert ("FAILED", "shutdown") in kinds and kinds <= {("MET", None), ("FAILED", "shutdown")}, answers
    counts = json.loads(next(ln for ln in reversed(lines) if ln.startswith("{")))["requests"]
    assert sum(counts.values()) == 8 and counts["FAILED"] == sum(a["outcome"] == "FAILED" for a in answers)
