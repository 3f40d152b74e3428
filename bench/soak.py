"""``edgeserving bench soak``: a long steady run at a fraction of the measured capacity, then the
accounting check; with ``--overload``, a burst at a multiple of capacity instead.

1. One local Ray and Serve deploy the config (``ray_config.yaml`` by default: the torch demo zoo),
   exactly as ``edgeserving serve`` does.
2. **Capacity** (skipped with ``--capacity-rps``): Poisson arrivals over the served models at their
   default deadlines, open loop, ``--probe-s`` seconds per rate, rates growing by ``--step`` from
   ``--start-rps`` until one fails, then two bisection steps between the last pass and the first
   fail. A rate passes when at least ``--slo`` of its requests are MET (judged by the server, whose
   deadline counts from its own receipt), the answers keep up with the offer, every request gets
   the server's answer and the replayer keeps its schedule. Capacity is the highest passing rate.
3. **Soak**: ``--load`` x capacity for ``--minutes``, with a probe process sampling /metrics
   every 5 s (the worker's resident memory) and polling health every second. Reported: the
   violation ratio per minute, the resident-memory drift of each worker process (median of the
   first minute against median of the last; target at most 10%), and the accounting check: the
   server's counts equal the client's outcome by outcome, nothing in flight or queued.
4. **Overload** (``--overload``): ``--factor`` x capacity for ``--overload-s``, then
   ``--recovery-s`` at ``--load`` x capacity, health polled every 50 ms. Reported: health latency
   (target: within 100 ms throughout), goodput during the burst against capacity, the outcome mix,
   seconds until service is normal again, and the accounting check.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HELP = "soak: minutes at 80% of the measured capacity (memory drift, violations per minute, accounting); --overload"
HEALTH_TARGET_MS = 100.0
EMULATED_DILATION = 80.0
EMULATED_DEADLINE_MS = 50.0  # before dilation, as in the seed workload
DRIFT_TARGET = 0.10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="Ray Serve config (default: ray_config.yaml)")
    p.add_argument("--policy", default=None, help="override the config's policy")
    p.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    p.add_argument("--load", type=float, default=0.8, help="soak rate as a fraction of capacity (default 0.8)")
    p.add_argument("--capacity-rps", type=float, default=None, help="skip the capacity search and use this rate")
    p.add_argument("--probe-s", type=float, default=10.0, help="seconds per rate in the capacity search (default 10)")
    p.add_argument("--start-rps", type=float, default=10.0, help="first rate of the capacity search (default 10)")
    p.add_argument("--step", type=float, default=1.25, help="rate factor between search steps (default 1.25)")
    p.add_argument("--max-rps", type=float, default=500.0, help="highest rate the search tries (default 500)")
    p.add_argument("--slo", type=float, default=0.95, help="MET share a rate needs to pass (default 0.95)")
    p.add_argument("--bin-s", type=float, default=60.0, help="bin of the per-minute table, seconds (default 60)")
    p.add_argument("--overload", action="store_true", help="run the overload burst instead of the soak")
    p.add_argument("--factor", type=float, default=5.0, help="overload rate as a multiple of capacity (default 5)")
    p.add_argument("--overload-s", type=float, default=60.0, help="overload burst length (default 60)")
    p.add_argument("--recovery-s", type=float, default=15.0, help="calm phase after the burst (default 15)")
    p.add_argument("--grace-ms", type=float, default=15_000.0,
                   help="client timeout past each deadline; above the policy's longest hold (default 15000)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="unmeasured load before anything else (default 5)")
    p.add_argument("--emulate", nargs="?", const="", default=None, metavar="PROFILE",
                   help="serve an emulated device instead of the config's models: the seed GPU profile (or PROFILE) "
                        "on the profile executor, latencies and deadlines dilated by --dilation "
                        "(bench.live_emulated); capacity is then the device's (most accurate exits, full batches)")
    p.add_argument("--dilation", type=float, default=EMULATED_DILATION,
                   help=f"with --emulate: time dilation (default {EMULATED_DILATION:g}, so 5x the device's capacity "
                        "stays within what a 2-core box's HTTP path carries)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the report JSON (and the per-request results CSV) here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scheduler.console import status
    from scheduler.serving import deploy

    config_path = Path(args.config) if args.config else deploy.DEFAULT_CONFIG
    overrides = {"policy": args.policy} if args.policy else {}
    emulated = None
    if args.emulate is not None:
        import tempfile

        from bench.live_emulated import Emulation

        emulated = Emulation.load(args.emulate or None, args.dilation)
        folder = Path(args.out).parent if args.out else Path(tempfile.mkdtemp(prefix="edgeserving-soak-"))
        folder.mkdir(parents=True, exist_ok=True)
        overrides.update(emulated.worker_args(emulated.write_profile(folder),
                                              EMULATED_DEADLINE_MS * emulated.dilation))
        if args.capacity_rps is None:
            args.capacity_rps = round(emulated.capacity_rps(), 2)
        status(f"emulated device: {emulated.describe()}; capacity {args.capacity_rps:g} req/s")
    config = deploy.prepare(deploy.load_serve_config(config_path), host="127.0.0.1", port=_free_port(),
                            num_replicas=1, args=overrides, base_dir=config_path.resolve().parent, demo_zoo=status)
    rng = np.random.default_rng(args.seed)
    status("starting Ray (1 logical GPU) and deploying " + str(config_path))
    deploy.start_ray(num_gpus=1, num_cpus=2)
    try:
        url = deploy.deploy(config)
        deadlines = _deadlines(url)
        report: dict[str, Any] = {"config": str(config_path), "policy": deploy.worker_app(config)["args"].get(
            "policy", "edgeserving"), "models": deadlines, "machine": _machine(),
            "emulated": emulated.describe() if emulated is not None else None}
        if args.warmup_s > 0:  # every code path runs once before anything is measured
            _run(url, deadlines, args.warmup_s, args.start_rps, args, rng, "warm-up")
        if args.capacity_rps is None:
            report["capacity"] = _capacity(url, deadlines, args, rng)
            capacity = report["capacity"]["capacity_rps"]
        else:
            capacity = args.capacity_rps
            report["capacity"] = {"capacity_rps": capacity, "given": True}
        if capacity is None:
            raise RuntimeError(f"no rate passed the capacity search from {args.start_rps:g} req/s; lower --start-rps")
        if args.overload:
            report["overload"] = _overload(url, deadlines, capacity, args, rng)
        else:
            report["soak"] = _soak(url, deadlines, capacity, args, rng)
        report["machine"]["load_average_end"] = _loadavg()
    finally:
        deploy.shutdown()
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report)
    part = report.get("overload") or report.get("soak")
    return 0 if part["accounting"]["ok"] else 1


# -- phases ------------------------------------------------------------------------------------------------

def _capacity(url: str, deadlines: dict[str, float], args: argparse.Namespace, rng) -> dict[str, Any]:
    from bench.soak_stats import capacity_step
    from scheduler.console import status

    steps = []

    def probe(rate: float) -> bool:
        report = _run(url, deadlines, args.probe_s, rate, args, rng, f"capacity {rate:.1f} req/s")
        step = capacity_step(rate, args.probe_s, report.results, report.wall_s or 0.0,
                             bool(report.lag and report.lag.fell_behind), args.slo)
        steps.append(step)
        status(f"  {rate:.1f} req/s: {step.met_ratio:.1%} MET, throughput {step.throughput_ratio:.1%}"
               f"{', replayer fell behind' if step.fell_behind else ''} -> {'pass' if step.passed else 'fail'}")
        return step.passed

    passed, failed = None, None
    rate = args.start_rps
    while rate <= args.max_rps:
        if not probe(rate):
            failed = rate
            break
        passed, rate = rate, rate * args.step
    if passed is not None and failed is not None:
        for _ in range(2):
            mid = (passed + failed) / 2
            if probe(mid):
                passed = mid
            else:
                failed = mid
    return {"capacity_rps": passed, "first_failing_rps": failed, "slo": args.slo, "probe_s": args.probe_s,
            "steps": [_asdict(s) for s in steps]}


def _soak(url: str, deadlines: dict[str, float], capacity: float, args: argparse.Namespace, rng) -> dict[str, Any]:
    from bench.probe import Probe
    from bench.soak_stats import accounting, memory_drift, per_bin, reasons, server_counts

    seconds = args.minutes * 60.0
    rate = args.load * capacity
    before = server_counts(_metrics(url))
    with Probe(url, health_interval_s=1.0, metrics_interval_s=5.0) as probe:
        t0 = time.perf_counter()
        report = _run(url, deadlines, seconds, rate, args, rng, f"soak {rate:.1f} req/s")
    after = _settle(url)
    assert probe.report is not None
    start_s = t0 + 0.1  # the replayer's time zero (its start delay)
    drift = {}
    for pid in {p for s in probe.report.samples for p in s.resident_bytes}:
        d = memory_drift(probe.report.resident_of(pid), start_s, start_s + seconds, min(args.bin_s, seconds / 2))
        if d is not None:
            drift[pid] = {**d.to_dict(), "pid": pid}
    _save_results(args, report)
    bins = _with_load(per_bin(report.results, args.bin_s), probe.report, start_s, args.bin_s)
    return {"rate_rps": rate, "load": args.load, "seconds": seconds, "requests": len(report.results),
            "send_lag": report.lag.to_dict() if report.lag else None, "per_bin": bins,
            "bin_s": args.bin_s, "memory": drift, "drift_target": DRIFT_TARGET,
            "health": probe.report.health_summary(target_ms=HEALTH_TARGET_MS),
            "summary": _summary(report), "reasons": reasons(report.results),
            "accounting": accounting(report.results, before, after)}


def _overload(url: str, deadlines: dict[str, float], capacity: float, args: argparse.Namespace, rng
              ) -> dict[str, Any]:
    from bench.probe import Probe
    from bench.soak_stats import accounting, per_bin, reasons, recovery_s, server_counts, workload
    from scheduler.console import status
    from workloads.replay import replay_http

    burst = workload(deadlines, args.factor * capacity, args.overload_s, rng, tag="burst-")
    calm = workload(deadlines, args.load * capacity, args.recovery_s, rng, start_s=args.overload_s, tag="calm-")
    before = server_counts(_metrics(url))
    status(f"overload: {args.factor:g} x {capacity:.1f} req/s for {args.overload_s:g} s, then "
           f"{args.load:g} x for {args.recovery_s:g} s ({len(burst) + len(calm)} requests)")
    with Probe(url, health_interval_s=0.05, metrics_interval_s=0.5) as probe:
        t0 = time.perf_counter()
        report = replay_http(burst + calm, url, grace_ms=args.grace_ms)
    after = _settle(url)
    assert probe.report is not None
    zero = t0 + 0.1
    results = report.results
    in_burst = [r for r in results if r.request.arrival_s < args.overload_s]
    met_rps = sum(r.outcome.value == "MET" for r in in_burst) / args.overload_s
    _save_results(args, report)
    return {"capacity_rps": capacity, "factor": args.factor, "seconds": args.overload_s, "requests": len(results),
            "send_lag": report.lag.to_dict() if report.lag else None,
            "health_burst": probe.report.health_summary(zero, zero + args.overload_s, HEALTH_TARGET_MS),
            "health_all": probe.report.health_summary(target_ms=HEALTH_TARGET_MS),
            "goodput_rps": met_rps, "goodput_share_of_capacity": met_rps / capacity,
            "max_queue_depth": probe.report.max_of("queue_depth"), "max_inflight": probe.report.max_of("inflight"),
            "worker_pids": sorted({p for s in probe.report.samples for p in s.resident_bytes}),
            "recovery_s": recovery_s(results, args.overload_s),
            "per_bin": _with_load(per_bin(results, 5.0), probe.report, zero, 5.0), "bin_s": 5.0,
            "summary": _summary(report), "reasons": reasons(results), "accounting": accounting(results, before, after)}


# -- helpers ---------------------------------------------------------------------------------------------------

def _run(url: str, deadlines: dict[str, float], seconds: float, rate: float, args: argparse.Namespace, rng,
         label: str):
    from bench.soak_stats import workload
    from scheduler.console import progress
    from workloads.replay import replay_http

    rows = workload(deadlines, rate, seconds, rng)
    with progress() as bar:
        task = bar.add_task(label, total=len(rows))
        return replay_http(rows, url, grace_ms=args.grace_ms,
                           on_progress=lambda sent, done: bar.update(task, completed=done))


def _with_load(bins: list[dict[str, Any]], probe_report, zero_s: float, bin_s: float) -> list[dict[str, Any]]:
    """Each bin with the machine's mean 1-minute load average while it ran (the probe's samples)."""
    for b in bins:
        t0 = zero_s + b["start_s"]
        loads = [s.load_avg_1m for s in probe_report.samples
                 if t0 <= s.t_s < t0 + bin_s and s.load_avg_1m is not None]
        b["load_avg_1m"] = sum(loads) / len(loads) if loads else None
    return bins


def _deadlines(url: str) -> dict[str, float]:
    import httpx

    models = httpx.get(f"{url}/v1/models", timeout=10).json()["models"]
    missing = [m["name"] for m in models if not m.get("default_deadline_ms")]
    if missing:
        raise ValueError(f"models {missing} have no default_deadline_ms in the config; the soak uses each model's")
    return {m["name"]: float(m["default_deadline_ms"]) for m in models}


def _metrics(url: str) -> str:
    import httpx

    return httpx.get(f"{url}/metrics", timeout=30).text


def _settle(url: str, timeout_s: float = 60.0) -> dict[str, float]:
    """The server's counts once every request it received has its outcome (or after ``timeout_s``)."""
    from bench.soak_stats import OUTCOMES, server_counts

    deadline = time.perf_counter() + timeout_s
    while True:
        counts = server_counts(_metrics(url))
        done = counts["received"] == sum(counts[o] for o in OUTCOMES) and counts["inflight"] == 0
        if done or time.perf_counter() > deadline:
            return counts
        time.sleep(0.5)


def _summary(report) -> dict[str, Any]:
    s = report.summary()
    return {k: s.get(k) for k in ("outcomes", "violation_ratio", "p50_latency_ms", "p99_latency_ms",
                                  "mean_accuracy") if k in s}


def _save_results(args: argparse.Namespace, report) -> None:
    if args.out:
        report.write_results(Path(args.out).with_suffix(".csv"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_start": _loadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _asdict(step) -> dict[str, Any]:
    return {name: getattr(step, name) for name in step.__slots__}


# -- the report ------------------------------------------------------------------------------------------------

def _print(report: dict[str, Any]) -> None:
    from scheduler.console import print_table, say

    cap = report["capacity"]
    say(f"policy {report['policy']}; models and default deadlines (ms): {report['models']}")
    if report.get("emulated"):
        say(f"emulated device: {report['emulated']}")
    if cap.get("steps"):
        print_table("capacity search (open-loop Poisson, server-judged MET)",
                    ["rate req/s", "requests", "MET", "throughput", "replayer behind", "verdict"],
                    [[f"{s['rate_rps']:.1f}", str(s["requests"]), f"{s['met_ratio']:.1%}",
                      f"{s['throughput_ratio']:.1%}", "yes" if s["fell_behind"] else "no",
                      "pass" if s["passed"] else "fail"] for s in cap["steps"]])
    say(f"capacity: {cap['capacity_rps']:.1f} req/s" + (" (given)" if cap.get("given") else
                                                       f" (first failing rate {cap['first_failing_rps']})"))
    part = report.get("soak") or report["overload"]
    print_table(f"per {part['bin_s']:g} s of arrivals", ["from s", "requests", *_OUTCOME_COLUMNS, "violation ratio",
                                                          "p99 latency ms", "machine load (1 min)"],
                [[f"{b['start_s']:g}", str(b["requests"]), *[str(b[o]) for o in _OUTCOME_COLUMNS],
                  f"{b['violation_ratio']:.2%}",
                  "-" if b["p99_latency_ms"] is None else f"{b['p99_latency_ms']:.1f}",
                  "-" if b.get("load_avg_1m") is None else f"{b['load_avg_1m']:.1f}"] for b in part["per_bin"]])
    if "soak" in report:
        s = report["soak"]
        say(f"soak: {s['requests']} requests at {s['rate_rps']:.1f} req/s ({s['load']:.0%} of capacity) for "
            f"{s['seconds'] / 60:g} min; overall violation ratio {s['summary'].get('violation_ratio')}")
        for pid, d in s["memory"].items():
            verdict = "PASS" if d["drift"] <= DRIFT_TARGET else "FAIL"
            say(f"worker pid {pid}: resident memory {d['reference_mib']:.1f} MiB (first minute, median) -> "
                f"{d['final_mib']:.1f} MiB (last minute), max {d['max_mib']:.1f} MiB: drift {d['drift']:+.2%} "
                f"(target <= {DRIFT_TARGET:.0%}) {verdict}")
        say(f"health (1 poll/s): {s['health']}")
    else:
        o = report["overload"]
        say(f"overload: {o['requests']} requests, {o['factor']:g} x {o['capacity_rps']:.1f} req/s for "
            f"{o['seconds']:g} s; goodput {o['goodput_rps']:.1f} MET/s = {o['goodput_share_of_capacity']:.0%} of "
            f"capacity; max queue depth {o['max_queue_depth']:g}, max in flight {o['max_inflight']:g}; "
            f"worker processes {o['worker_pids']}; back to normal {o['recovery_s']} s after the burst")
        say(f"health during the burst (every 50 ms): {o['health_burst']}")
    say(f"not MET/LATE, by reason: {part['reasons'] or 'none'}")
    a = part["accounting"]
    say(f"accounting: {'PASS' if a['ok'] else 'FAIL'}: sent {a['sent']}, received {a['received']:g}; client "
        f"{a['client']}; server {a['server']}; in flight {a['inflight']:g}, queued {a['queued']:g}, "
        f"without the server's answer {a['unanswered']}")
    say(f"machine: {report['machine']}")


_OUTCOME_COLUMNS = ("MET", "LATE", "REJECTED", "DROPPED", "FAILED")
