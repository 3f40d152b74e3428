"""``edgeserving bench serve-overhead``: what edgeserving adds to a request, beside plain Ray Serve.

One Ray, one Serve instance, two applications of the same checkpoint: edgeserving's worker
(``ray_config.yaml``, route ``/``) and a plain deployment (``bench.serve_plain``, route
``/plain``) that runs the model straight in its handler. Requests go one at a time (closed loop),
alternating between the two so both see the same machine noise. Overhead = client-observed
latency minus the model's own slot time (``slot_ms`` each side reports, measured the same way);
the difference of the two overheads is the cost of the engine, its queues and the scheduler.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

import numpy as np

HELP = "serving overhead (latency minus slot time), edgeserving vs a plain Ray Serve deployment, one run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="Ray Serve config (default: ray_config.yaml)")
    p.add_argument("--model", default=None, help="model to measure (default: the config's first)")
    p.add_argument("--requests", type=int, default=400, help="measured requests per side (default 400)")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured requests per side first (default 50)")
    p.add_argument("--deadline-ms", type=float, default=1000.0,
                   help="deadline of edgeserving requests: loose, so the final exit runs as in the plain one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summarize(rows: list[dict[str, float]]) -> dict[str, Any]:
    overhead = [r["client_ms"] - r["slot_ms"] for r in rows]
    out = {"requests": len(rows), "p50_latency_ms": _pct([r["client_ms"] for r in rows], 50),
           "p50_slot_ms": _pct([r["slot_ms"] for r in rows], 50),
           "p50_overhead_ms": _pct(overhead, 50), "p99_overhead_ms": _pct(overhead, 99)}
    if all("worker_ms" in r for r in rows):  # edgeserving reports its own latency: split the overhead
        out["p50_in_worker_ms"] = _pct([r["worker_ms"] - r["slot_ms"] for r in rows], 50)
        out["p50_outside_worker_ms"] = _pct([r["client_ms"] - r["worker_ms"] for r in rows], 50)
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import httpx

    from scheduler.console import print_table, progress, say, status
    from scheduler.serving import deploy
    from scheduler.serving.config import parse_config

    config_path = Path(args.config) if args.config else deploy.DEFAULT_CONFIG
    config = deploy.prepare(deploy.load_serve_config(config_path), host="127.0.0.1", port=_free_port(),
                            num_replicas=1, base_dir=config_path.resolve().parent, demo_zoo=status)
    cfg = parse_config(deploy.worker_app(config)["args"])
    if cfg.executor != "torch":
        raise ValueError("serve-overhead compares real models: the config must use executor: torch")
    model = args.model or next(iter(cfg.models))
    if model not in cfg.models:
        raise ValueError(f"unknown model {model!r}; the config serves {list(cfg.models)}")
    config["applications"].append({
        "name": "plain", "route_prefix": "/plain", "import_path": "bench.serve_plain:build_plain",
        "args": {"checkpoint": str(cfg.checkpoint_path(model)), "threads": cfg.torch_threads or 1}})
    status("starting Ray (1 logical GPU) and deploying edgeserving and the plain deployment side by side")
    deploy.start_ray(num_gpus=1, num_cpus=2)
    try:
        url = deploy.deploy(config)
        shape = next(m["input_shape"] for m in httpx.get(f"{url}/v1/models").json()["models"] if m["name"] == model)
        rng = np.random.default_rng(args.seed)
        edge, plain = [], []
        with httpx.Client(timeout=30.0) as client, progress() as bar:
            task = bar.add_task(f"{model}: requests", total=2 * (args.warmup + args.requests))
            for i in range(args.warmup + args.requests):
                sample = rng.standard_normal(shape).astype(np.float32).tolist()
                sides = [("edge", edge), ("plain", plain)]
                for side, rows in sides if i % 2 == 0 else sides[::-1]:
                    row = _one(client, url, side, model, sample, args.deadline_ms)
                    if i >= args.warmup:
                        rows.append(row)
                    bar.advance(task)
    finally:
        deploy.shutdown()
    result = {"model": model, "device": "cpu" if deploy.detect_gpus() == 0 else "cuda",
              "edgeserving": summarize(edge), "plain_ray_serve": summarize(plain)}
    result["added_p50_ms"] = result["edgeserving"]["p50_overhead_ms"] - result["plain_ray_serve"]["p50_overhead_ms"]
    result["added_p99_ms"] = result["edgeserving"]["p99_overhead_ms"] - result["plain_ray_serve"]["p99_overhead_ms"]
    late = sum(1 for r in edge if r["outcome"] != "MET")
    result["edgeserving_not_met"] = late
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = []
    for name, s in (("edgeserving", result["edgeserving"]), ("plain Ray Serve", result["plain_ray_serve"])):
        rows.append([name, str(s["requests"]), f"{s['p50_latency_ms']:.2f}", f"{s['p50_slot_ms']:.2f}",
                     f"{s['p50_overhead_ms']:.2f}", f"{s['p99_overhead_ms']:.2f}"])
    rows.append(["edgeserving - plain", "", "", "", f"{result['added_p50_ms']:+.2f}", f"{result['added_p99_ms']:+.2f}"])
    print_table(f"serving overhead: {model}, one request at a time (ms; overhead = client latency - slot time)",
                ["deployment", "requests", "p50 latency", "p50 slot", "p50 overhead", "p99 overhead"], rows)
    e = result["edgeserving"]
    say(f"edgeserving's overhead split (p50): {e['p50_in_worker_ms']:.2f} ms in the worker before the slot (reading "
        f"the body from the proxy, validation, hand-off to the engine thread), {e['p50_outside_worker_ms']:.2f} ms "
        "outside it (client, HTTP, Serve proxy, the answer's way back)")
    if late:
        say(f"note: {late} edgeserving requests were not MET at a {args.deadline_ms:g} ms deadline")
    return 0


def _one(client, url: str, side: str, model: str, sample: list, deadline_ms: float) -> dict[str, Any]:
    if side == "edge":
        t0 = time.perf_counter()
        r = client.post(f"{url}/v1/infer", json={"model": model, "inputs": sample, "deadline_ms": deadline_ms})
        client_ms = (time.perf_counter() - t0) * 1000.0
        body = r.json()
        if body.get("slot_ms") is None:
            raise RuntimeError(f"edgeserving answered HTTP {r.status_code} without a slot: {body}")
        return {"client_ms": client_ms, "slot_ms": body["slot_ms"], "worker_ms": body["latency_ms"],
                "outcome": body["outcome"]}
    t0 = time.perf_counter()
    r = client.post(f"{url}/plain", json={"inputs": sample})
    client_ms = (time.perf_counter() - t0) * 1000.0
    r.raise_for_status()
    return {"client_ms": client_ms, "slot_ms": r.json()["slot_ms"], "outcome": "MET"}
