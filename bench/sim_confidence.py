"""``edgeserving bench sim --confidence``: per-sample confidence exits under the scheduler's cap.

The demo CPU zoo runs for real (``models.executor.TorchExecutor``, one torch thread as profiled) inside
the simulator's engine on a virtual clock that advances by each slot's *measured* time, so the
policy, the engine and the network code are the live ones and only the arrivals are simulated.
One Poisson trace of test-split samples (with their labels) is served twice by ``lookahead``:
with each plan's exit as the exit of every sample, then with the zoo's calibrated confidence exits
(a sample leaves at its first confident head, never past the plan's exit, which is thus a cap the
policy plans with at the cap's latency). Reported: GPU (here CPU) busy time per request, the share
of samples that left before the cap, measured top-1 accuracy against the labels, violation ratio
and P95.
"""

from __future__ import annotations

import argparse
import time

from scheduler.engine import EngineListener


class _Slots(EngineListener):
    def __init__(self) -> None:
        self.busy_ms = 0.0
        self.samples = 0
        self.early = 0  # samples that left before the plan's exit

    def slot_done(self, plan, slot, decision_ms) -> None:
        if slot is None:
            return
        self.busy_ms += slot.slot_ms
        self.samples += len(slot.exits)
        self.early += sum(e != plan.exit for e in slot.exits)


def measured_profile(profile, checkpoints, tests, bmax: int, threads: int, repeats: int = 5):
    """``profile`` with each model's full-batch latency at its most accurate exit re-timed now (mean of
    ``repeats`` slots after a warm-up), the other entries scaled by the same factor per model."""
    import numpy as np

    from bench.sim_suites import scaled_profile
    from models.executor import executor_from_checkpoints
    from scheduler.profile import Profile
    from scheduler.types import Plan, Request

    executor = executor_from_checkpoints(checkpoints, threads=threads)
    d = profile.to_dict()
    for m, mp in profile.models.items():
        best = max(mp.exits, key=lambda e: (mp.accuracy[e], -profile.latency_ms(m, e, bmax, "mean")))
        x = np.ascontiguousarray(tests[m].x[:bmax], dtype=np.float32)
        batch = tuple(Request(f"t{i}", m, 0.0, 1.0, payload=x[i % len(x)]) for i in range(bmax))
        plan = Plan.run(m, best, batch, 0.0)
        executor.run(plan)  # warm-up
        took = sorted(executor.run(plan).slot_ms for _ in range(repeats))
        factor = took[len(took) // 2] / profile.latency_ms(m, best, bmax, "mean")
        one = scaled_profile(Profile.from_dict({**d, "models": {m: d["models"][m]}}), factor)
        d["models"][m] = one.to_dict()["models"][m]
    return Profile.from_dict(d, source=f"{profile.source} re-timed")


def run_confidence(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from bench.sim_report import markdown_table
    from bench.sim_suites import capacity_rps
    from models.checkpoint import load_zoo
    from models.data import load_dataset
    from models.executor import executor_from_checkpoints
    from models.zoo import DEMO_THREADS, ensure_demo_zoo
    from scheduler.console import print_table, say, status
    from scheduler.policies.lookahead import LookaheadPolicy
    from scheduler.profile import Profile
    from scheduler.simulator import simulate
    from scheduler.summary import summarize
    from scheduler.types import Request
    from workloads.generators import generate

    zoo = ensure_demo_zoo(log=status)
    profile = Profile.load(zoo.profile_path)
    checkpoints = load_zoo(zoo.checkpoint_dir, zoo.models)
    tests = {m: load_dataset(meta.dataset, meta.seed).test for m, (_, meta) in checkpoints.items()}
    weights = dict.fromkeys(zoo.models, 1.0)
    # The CPU is shared: take the capacity from slots timed now rather than from the stored profile.
    measured = measured_profile(profile, checkpoints, tests, args.bmax, DEMO_THREADS)
    rate_rps = args.confidence_load * capacity_rps(measured, weights, args.bmax)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 10.0)
    rows = generate("poisson", {m: rate_rps / len(weights) for m in weights}, args.confidence_deadline_ms,
                    seconds, np.random.default_rng(0))
    requests = []
    for k, r in enumerate(rows):
        test = tests[r.model]
        i = k % len(test.y)
        requests.append(Request(r.request_id, r.model, r.arrival_s, r.arrival_s + r.deadline_ms / 1000.0,
                                payload=np.ascontiguousarray(test.x[i], dtype=np.float32), label=int(test.y[i])))
    status(f"capacity measured now: {capacity_rps(measured, weights, args.bmax):.0f} requests/s (profile says "
           f"{capacity_rps(profile, weights, args.bmax):.0f})")
    status(f"{len(requests)} requests ({rate_rps:.0f}/s, {args.confidence_deadline_ms:g} ms) on the demo zoo "
           f"{list(zoo.models)}, real CPU slots; confidence exits off, then on")
    out = []
    for confident in (False, True):
        slots = _Slots()
        policy = LookaheadPolicy(bmax=args.bmax)

        def factory(clock, rng, confident=confident):
            return executor_from_checkpoints(checkpoints, clock=clock, threads=DEMO_THREADS,
                                             confidence_models=zoo.models if confident else ())

        t0 = time.perf_counter()
        results = simulate(requests, profile, policy, seed=0, executor_factory=factory, listeners=[slots])
        wall_s = time.perf_counter() - t0
        s = summarize(results, profile, "lookahead")
        done = [r for r in results if r.outcome.completed]
        correct = sum(r.prediction == r.request.label for r in done)
        out.append({"confidence_exits": confident, "requests": len(results), "violation_ratio": s["violation_ratio"],
                    "p95_ms": s["p95_ms"], "busy_ms_per_request": slots.busy_ms / max(1, slots.samples),
                    "left_before_cap": slots.early / max(1, slots.samples),
                    "measured_accuracy": correct / len(done) if done else None, "wall_s": wall_s,
                    "early_slots": policy.stats().get("confidence_exits", {}).get("slots", 0)})
    header = ["confidence exits", "requests", "violation %", "P95 ms", "busy ms / request", "left before cap %",
              "measured acc %"]
    table = [["on" if r["confidence_exits"] else "off", str(r["requests"]), f"{100 * r['violation_ratio']:.2f}",
              "-" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}", f"{r['busy_ms_per_request']:.3f}",
              f"{100 * r['left_before_cap']:.1f}",
              "-" if r["measured_accuracy"] is None else f"{100 * r['measured_accuracy']:.2f}"] for r in out]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "confidence.md").write_text(
        f"# bench sim --confidence\n\n- demo zoo {list(zoo.models)} ({zoo.source}), profile {zoo.profile_path}; "
        f"{rate_rps:.0f} requests/s ({args.confidence_load:g} x the capacity measured at the start, "
        f"{capacity_rps(measured, weights, args.bmax):.0f}/s; the stored profile says "
        f"{capacity_rps(profile, weights, args.bmax):.0f}/s), deadline "
        f"{args.confidence_deadline_ms:g} ms, {seconds:g} s, Bmax {args.bmax}, policy lookahead\n\n"
        + markdown_table(header, table) + "\n")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print_table("confidence exits under the scheduler's cap (demo zoo, real CPU slots)", header, table)
    off, on = out
    say(f"busy time per request {100 * (1 - on['busy_ms_per_request'] / off['busy_ms_per_request']):+.1f}% saved; "
        f"measured accuracy {100 * ((on['measured_accuracy'] or 0) - (off['measured_accuracy'] or 0)):+.2f} pt; "
        f"wrote {out_dir / 'confidence.md'}")
    return 0
