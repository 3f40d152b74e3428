"""``edgeserving bench sim``: policies x loads x deadline mixes x seeds in the simulator.

Every run is an independent process (a pool of ``--workers``, default one per core). Writes into
``--out``: ``runs.csv`` (one row per run), ``sim.md`` (tables and target verdicts) and PNG plots
(violation ratio, P95 and effective accuracy against load per suite; the exit mix per policy). It
prints, per suite, whether issue 7's simulated targets hold for our policy against the reference,
computed from the runs. ``--ablation`` instead runs our policy with each capability turned off;
``--confidence`` measures confidence exits on the demo CPU zoo (``bench.sim_confidence``) and
``--preemption`` what exit-boundary preemption buys and costs (``bench.sim_preemption``).
Workloads, capacity and the hard-suite noise are defined in ``bench.sim_suites``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from functools import lru_cache
from pathlib import Path

HELP = "policy sweeps in the simulator (seed, bursty, mixed-deadline, Azure, overload): CSV, tables, plots, targets"

CSV_COLUMNS = ("suite", "process", "load", "total_rps", "slo", "noise", "target", "policy", "seed", "requests",
               "MET", "LATE", "REJECTED", "DROPPED", "FAILED", "violation_ratio", "p50_ms", "p95_ms", "p99_ms",
               "mean_accuracy", "effective_accuracy", "exits", "mean_abs_error_ms", "margin", "wall_s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scheduler.paths import azure_llm_trace_path, seed_profile_path

    p.add_argument("--profile", default=str(seed_profile_path()), help="profile JSON (default: the seed profile)")
    p.add_argument("--azure-trace", default=str(azure_llm_trace_path()),
                   help="Azure LLM trace CSV (default: ../shared/traces; skipped with a note when absent)")
    p.add_argument("--out", default="out/bench-sim", help="output folder (default out/bench-sim)")
    p.add_argument("--ours", default=None, help="our policy (default: the registry's best, lookahead)")
    p.add_argument("--policies", default="edf_exit",
                   help="comma-separated extra policies (names or specs such as lookahead:latency_target=0.5) to sweep "
                        "beside the reference and ours (default edf_exit; "
                        "'' for none)")
    p.add_argument("--suites", default=None, help="comma-separated suites to keep (seed, gamma-cv4, mmpp-3x, "
                   "mixed-deadlines, azure-llm, overload; default all)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per point (default 3)")
    p.add_argument("--seconds", type=float, default=None, help="simulated seconds per run (default 30; --quick 8)")
    p.add_argument("--bmax", type=int, default=10, help="largest batch (default 10)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    p.add_argument("--quick", action="store_true", help="fewer points and shorter runs (under a minute)")
    p.add_argument("--ablation", action="store_true", help="our policy with each capability off, on the hard points")
    p.add_argument("--confidence", action="store_true",
                   help="instead: confidence exits off vs on, the demo CPU zoo running for real "
                        "(see bench.sim_confidence)")
    p.add_argument("--confidence-load", type=float, default=0.6, help="with --confidence: load as a fraction of "
                   "the demo zoo's capacity (default 0.6)")
    p.add_argument("--confidence-deadline-ms", type=float, default=30.0,
                   help="with --confidence: the deadline (default 30 ms)")
    p.add_argument("--preemption", action="store_true",
                   help="instead: lookahead with exit-boundary preemption off vs on on bursty mixed-deadline "
                        "workloads, and its cost on the demo CPU zoo's real slots (see bench.sim_preemption)")
    p.add_argument("--preemption-repeats", type=int, default=None,
                   help="with --preemption: interleaved A/B slot timings per model and batch (default 200; "
                        "--quick 50)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--json", action="store_true", help="print runs, points and verdicts as JSON")


# -- one run (in a worker process) ------------------------------------------------------------


@lru_cache(maxsize=4)
def _profile(path: str):
    from scheduler.profile import Profile

    return Profile.load(path)


def run_one(spec, profile_path: str, azure_path: str | None, bmax: int, policy=None) -> dict:
    """Simulate one RunSpec and return its CSV row (as a dict). ``policy``, when given, replaces the one
    the spec names (for variants no registry name and options can express, e.g. in bench.sim_preemption)."""
    import numpy as np

    from bench.sim_suites import build_requests
    from scheduler.policies import make_policy
    from scheduler.simulator import simulate
    from scheduler.summary import summarize

    profile = _profile(profile_path)
    w = spec.workload
    trace_seed, exec_seed = np.random.SeedSequence(spec.seed).spawn(2)
    requests = build_requests(w, profile, np.random.default_rng(trace_seed), azure_path)
    if policy is None:
        policy = make_policy(spec.policy, bmax=bmax, **dict(spec.options))
    t0 = time.perf_counter()
    factory = None
    if w.device_scale != 1.0:
        from bench.sim_suites import scaled_profile
        from scheduler.executor import ProfileExecutor

        device = scaled_profile(profile, w.device_scale)

        def factory(clock, rng):
            return ProfileExecutor(device, clock, rng, w.noise)
    results = simulate(requests, profile, policy, seed=exec_seed, noise=w.noise, executor_factory=factory)
    wall_s = time.perf_counter() - t0
    s = summarize(results, profile, spec.label)
    stats = policy.stats().get("prediction", {}) if hasattr(policy, "stats") else {}
    return {"suite": w.suite, "process": w.process, "load": w.load, "total_rps": round(w.total_rps, 3),
            "slo": w.slo_label, "noise": round(w.noise, 4), "target": w.target, "policy": spec.label,
            "seed": spec.seed, "requests": s["requests"], **s["outcomes"], "violation_ratio": s["violation_ratio"],
            "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"], "p99_ms": s["p99_ms"],
            "mean_accuracy": s["mean_accuracy"], "effective_accuracy": s["effective_accuracy"],
            "exits": s["exits"], "mean_abs_error_ms": stats.get("mean_abs_error_ms"), "margin": stats.get("margin"),
            "wall_s": round(wall_s, 3)}


def _run_star(args: tuple) -> dict:
    return run_one(*args)


# -- the sweep --------------------------------------------------------------------------------


def plan_runs(args: argparse.Namespace, profile, ours: str, reference: str) -> list:
    from bench.sim_suites import RunSpec, ablation_variants, ablation_workloads, default_workloads

    seconds = args.seconds if args.seconds is not None else (8.0 if args.quick else 30.0)
    azure_ok = Path(args.azure_trace).exists()
    if args.ablation:
        workloads = ablation_workloads(profile, args.bmax, seconds, args.quick)
        variants = [*ablation_variants(ours), (reference, reference, ())]
    else:
        workloads = default_workloads(profile, args.bmax, seconds, args.quick, azure_ok)
        names = [reference, ours] + [n for n in (args.policies or "").split(",") if n and n not in (reference, ours)]
        variants = [(n, n, ()) for n in names]
    if args.suites:
        keep = set(args.suites.split(","))
        known = {w.suite for w in workloads}
        unknown = keep - known - {"azure-llm"}
        if unknown:
            raise ValueError(f"unknown suite(s) {sorted(unknown)}; suites are {sorted(known | {'azure-llm'})}")
        workloads = [w for w in workloads if w.suite in keep]
    specs = [RunSpec(w, label, policy, seed, options)
             for w in workloads for label, policy, options in variants for seed in range(args.seeds)]
    # Longest first, so the pool's last jobs are short ones.
    specs.sort(key=lambda s: -(s.workload.total_rps * (s.workload.seconds or 30.0)))
    return specs


def run_pool(fn, jobs: list, workers: int, label: str) -> tuple[list[dict], float]:
    """``fn(job)`` for every job on ``workers`` processes, with a progress bar: the rows (in completion
    order) and the wall time in seconds. ``fn`` must be a module-level function (it is pickled)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from scheduler.console import progress

    t0 = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers) as pool, progress() as bar:
        task = bar.add_task(label, total=len(jobs))
        for f in as_completed([pool.submit(fn, job) for job in jobs]):
            rows.append(f.result())
            bar.advance(task)
    return rows, time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    from bench import sim_report as rep
    from scheduler.console import print_table, say, status
    from scheduler.policies import REFERENCE_POLICY, make_policy
    from scheduler.profile import Profile

    if args.confidence and args.preemption:
        raise ValueError("--confidence and --preemption are separate benchmarks: pick one")
    if args.confidence:
        from bench.sim_confidence import run_confidence

        return run_confidence(args)
    if args.preemption:
        from bench.sim_preemption import run_preemption

        return run_preemption(args)
    profile = Profile.load(args.profile)
    ours = args.ours or "lookahead"
    reference = REFERENCE_POLICY
    for name in [ours, reference, *(args.policies or "").split(",")]:
        if name:
            make_policy(name)  # unknown names fail here, before any process starts
    if args.seeds < 1 or args.workers < 1:
        raise ValueError("--seeds and --workers must be >= 1")
    specs = plan_runs(args, profile, ours, reference)
    azure_path = args.azure_trace if Path(args.azure_trace).exists() else None
    if azure_path is None and not args.ablation:
        status(f"Azure LLM trace not found at {args.azure_trace}: the azure-llm suite is skipped")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    status(f"{len(specs)} simulations on {args.workers} processes -> {out_dir}")
    rows, wall_s = run_pool(_run_star, [(s, args.profile, azure_path, args.bmax) for s in specs], args.workers,
                            "bench sim")
    rows.sort(key=lambda r: (r["suite"], r["slo"], r["load"], r["policy"], r["seed"]))
    write_csv(out_dir / "runs.csv", rows)
    points = rep.aggregate(rows)
    verdicts = [] if args.ablation else rep.check_targets(points, reference, ours)
    plots = [] if args.no_plots else _plots(points, rows, profile, out_dir)
    md = _markdown(args, profile, points, verdicts, ours, reference, wall_s, len(specs), plots)
    (out_dir / "sim.md").write_text(md)
    if args.json:
        print(json.dumps({"runs": rows, "points": [_point_json(p) for p in points],
                          "verdicts": [_verdict_json(v) for v in verdicts], "wall_s": wall_s}, indent=2))
        return 0
    if args.ablation:
        header, table = rep.ablation_table(points, ours)
        print_table(f"ablation: {ours} with one capability off ({args.seeds} seeds pooled)", header, table)
    else:
        header, table = rep.points_table(points)
        print_table(f"bench sim: {len(specs)} runs, {args.seeds} seeds pooled per point", header, table)
        header, table = rep.verdict_table(verdicts)
        print_table(f"issue-7 targets: {ours} against {reference}", header, table)
        for line in rep.suite_summary(verdicts):
            say(line)
    say(f"{len(specs)} runs in {wall_s:.0f} s on {args.workers} processes; wrote {out_dir / 'runs.csv'}, "
        f"{out_dir / 'sim.md'}" + (f" and {len(plots)} plots" if plots else ""))
    return 0


def write_csv(path: Path, rows: list[dict], columns: tuple[str, ...] = CSV_COLUMNS) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "exits": json.dumps(r["exits"], separators=(",", ":"))})


def _plots(points, rows, profile, out_dir: Path) -> list[Path]:
    from bench.plots import exit_mix_plot, suite_plots
    from bench.sim_report import exit_mix_rows

    written = suite_plots(points, out_dir)
    order = {m: list(profile.model(m).exits) for m in profile.model_names}
    written.append(exit_mix_plot(exit_mix_rows(rows), order, out_dir / "exit_mix.png"))
    return written


def _markdown(args, profile, points, verdicts, ours: str, reference: str, wall_s: float, runs: int,
              plots: list[Path]) -> str:
    from bench import sim_report as rep
    from bench.sim_suites import capacity_rps, noise_for_p99_ratio, seed_weights

    cap = capacity_rps(profile, dict(seed_weights(profile)), args.bmax)
    lines = [
        f"# bench sim{' --ablation' if args.ablation else ''}{' --quick' if args.quick else ''}",
        "",
        rep.date_machine_line(),
        f"- profile: {profile.name} ({args.profile}); Bmax {args.bmax}; {args.seeds} seeds per point; "
        f"{runs} runs in {wall_s:.0f} s on {args.workers} processes",
        f"- capacity (3:2:1 mix, most accurate exits, full batches): {cap:.0f} requests/s "
        f"(λ = {cap / sum(w for _, w in seed_weights(profile)):.1f}); hard-suite noise factor "
        f"{noise_for_p99_ratio(profile):.3f} (p99/mean = 1.3)",
        "",
    ]
    if args.ablation:
        lines += ["## Ablation", "", rep.markdown_table(*rep.ablation_table(points, ours)), ""]
    else:
        lines += ["## Targets (issue 7)", "", *[f"- {s}" for s in rep.suite_summary(verdicts)], "",
                  rep.markdown_table(*rep.verdict_table(verdicts)), "",
                  "## Every point", "", rep.markdown_table(*rep.points_table(points)), ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(lines)


def _point_json(p) -> dict:
    return {"suite": p.suite, "process": p.process, "load": p.load, "slo": p.slo, "noise": p.noise,
            "policy": p.policy, "seeds": p.seeds, "requests": p.requests, "violation_ratio": p.violation_ratio,
            "mean_accuracy": p.mean_accuracy, "effective_accuracy": p.effective_accuracy, "p95_ms": p.p95_ms,
            "outcomes": dict(p.outcomes)}


def _verdict_json(v) -> dict:
    return {"target": v.target, "suite": v.suite, "load": v.load, "slo": v.slo, "holds": v.holds, "rule": v.rule,
            "reference": _point_json(v.ref), "ours": _point_json(v.ours)}

