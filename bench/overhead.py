"""``edgeserving bench overhead``: policy decision time by queue depth, and simulator throughput."""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np

HELP = "decision time per policy at queue depths 10/100/1000 per model, and simulator throughput"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scheduler.paths import seed_profile_path

    p.add_argument("--profile", default=str(seed_profile_path()), help="profile JSON (default: the seed profile)")
    p.add_argument("--depths", default="10,100,1000", help="queued requests per model (default 10,100,1000)")
    p.add_argument("--policies", default=None, help="comma-separated policies (default: all)")
    p.add_argument("--sim-seconds", type=float, default=60.0, help="trace length for the throughput runs")
    p.add_argument("--loads", default="40,120,240", help="seed-workload lambdas for the throughput runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")


def make_queues(profile, depth: int, now_s: float, slo_ms: float, rng: np.random.Generator):
    """Per-model queues of ``depth`` requests each, arrived over the last 0.8 SLO (a busy server)."""
    from scheduler.queues import RequestQueue
    from scheduler.types import Request

    queues = {}
    for m in profile.model_names:
        q = RequestQueue(m)
        ages_s = np.sort(rng.uniform(0, 0.8 * slo_ms / 1000.0, depth))[::-1]
        for i, age in enumerate(ages_s):
            arrival = now_s - float(age)
            q.push(Request(f"{m}-{i}", m, arrival, arrival + slo_ms / 1000.0))
        queues[m] = q
    return queues


def time_decisions(fn, min_calls: int, min_seconds: float = 0.3) -> np.ndarray:
    """Per-call times in microseconds; at least ``min_calls`` calls and ``min_seconds`` of timing."""
    times = []
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < min_calls or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return np.asarray(times) / 1000.0


def decision_times(profile, policies: list[str], depths: list[int], seed: int) -> list[dict]:
    from bench.naive_reference import naive_plan
    from scheduler.policies import make_policy

    rows = []
    for depth in depths:
        queues = make_queues(profile, depth, 100.0, 50.0, np.random.default_rng(seed))
        candidates = [(name, make_policy(name).plan) for name in policies]
        candidates.append(("naive-reference-loop", lambda now, qs, p: naive_plan(now, qs, p)))
        for name, plan in candidates:
            def call(plan=plan, queues=queues):
                return plan(100.0, queues, profile)

            us = time_decisions(call, min_calls=20 if depth >= 1000 else 200)
            rows.append({"policy": name, "depth_per_model": depth, "models": len(queues),
                         "median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
                         "calls": len(us)})
    return rows


def sim_throughput(profile, loads: list[float], seconds: float, seed: int, policy: str = "edgeserving") -> list[dict]:
    from scheduler.policies import make_policy
    from scheduler.simulator import simulate
    from workloads.poisson import poisson_rows

    rows = []
    names = profile.model_names
    for lam in loads:
        rates = {m: lam * w for m, w in zip(names, (3, 2, 1))}
        reqs = [r.to_request() for r in poisson_rows(rates, 50.0, seconds, np.random.default_rng(seed))]
        t0 = time.perf_counter()
        simulate(reqs, profile, make_policy(policy), seed=seed)
        wall_s = time.perf_counter() - t0
        rows.append({"policy": policy, "lambda": lam, "requests": len(reqs), "wall_s": wall_s,
                     "requests_per_s": len(reqs) / wall_s})
    return rows


def run(args: argparse.Namespace) -> int:
    from scheduler.console import print_table, say, status
    from scheduler.policies import policy_names
    from scheduler.profile import Profile

    profile = Profile.load(args.profile)
    policies = args.policies.split(",") if args.policies else policy_names()
    depths = [int(d) for d in args.depths.split(",")]
    loads = [float(x) for x in args.loads.split(",")]
    status(f"timing decisions of {len(policies)} policies at depths {depths} x {len(profile.model_names)} models")
    decisions = decision_times(profile, policies, depths, args.seed)
    status(f"simulating the seed workload at lambda {loads} for {args.sim_seconds:g} s each")
    throughput = sim_throughput(profile, loads, args.sim_seconds, args.seed)
    if args.json:
        print(json.dumps({"decision": decisions, "simulator": throughput}, indent=2))
        return 0
    print_table("decision time (us) per call", ["policy", "depth/model", "median us", "p99 us", "calls"],
                [[r["policy"], str(r["depth_per_model"]), f"{r['median_us']:.1f}", f"{r['p99_us']:.1f}",
                  str(r["calls"])] for r in decisions])
    print_table("simulator throughput (edgeserving policy, seed workload)",
                ["lambda", "requests", "wall s", "simulated req/s"],
                [[f"{r['lambda']:g}", str(r["requests"]), f"{r['wall_s']:.2f}", f"{r['requests_per_s']:,.0f}"]
                 for r in throughput])
    say("targets: edgeserving <= 50 us median at 3x100, <= 500 us at 3x1000; simulator >= 50,000 req/s")
    return 0
