"""``edgeserving bench sim --preemption``: what exit-boundary preemption buys, and what it costs.

**Benefit** (simulator, virtual clock, so the figures are deterministic per seed): the seed profile with
its 3:2:1 mix, bursty arrivals (gamma CV 4, MMPP 3x bursts; ``bench.sim_suites.preemption_workloads``)
with 20/50/200 ms deadline classes, and 10/50/200 ms where the shortest deadline is below the longest
slots, at fractions of capacity. ``lookahead`` runs with preemption off and on, with and without its
reserve for a fresh arrival (the planned protection that preemption could stand in for), beside the
reference ``edgeserving``. ``lookahead+never-stop`` runs stage by stage and is asked
at every boundary but never stops: the simulator then admits mid-slot arrivals at the boundaries rather
than at the slot's end, and the budget sees them one slot earlier, so this variant shows how much of
the on/off difference is that timing rather than stopped slots.

**Cost** (real torch on the demo CPU zoo, one thread as profiled): per model and batch size (1 and the
serving Bmax), ``TorchExecutor.run(plan)`` against ``run_preemptible(plan, never)`` to the final exit,
interleaved A/B so the shared machine's drift hits both alike: the price of stage-by-stage execution
and the questions, without the policy. Then the policy's own question (``LookaheadPolicy.preempt``) on
queues as a busy server holds them, with news since the decision (the stop value is computed) and
without (it returns at once).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scheduler.policies.lookahead import LookaheadPolicy

if TYPE_CHECKING:
    from bench.sim_report import Point
    from bench.sim_suites import RunSpec
    from scheduler.policies.base import Queues
    from scheduler.profile import Profile
    from scheduler.types import Plan

SERVING_BMAX = 8  # ray_config.yaml's bmax: the largest batch the live worker runs on the demo zoo
TORCH_BATCHES = (1, SERVING_BMAX)
QUESTION_DEPTHS = (10, 100)  # queued requests per model (bench.overhead's depths for decision time)
WARMUP = 20  # untimed slots per (model, batch) and path before the A/B timing
NEVER_STOP = "lookahead+never-stop"
CSV_EXTRA = ("preempted_slots", "accuracy_lost")


@dataclass(frozen=True, slots=True)
class Variant:
    label: str
    policy: str  # registry name
    options: tuple[tuple[str, object], ...] = ()
    base: str | None = None  # the variant its Δ columns are taken against


VARIANTS = (
    Variant("edgeserving", "edgeserving"),
    Variant("lookahead", "lookahead"),
    Variant(NEVER_STOP, "lookahead", (("preempt", True),), base="lookahead"),
    Variant("lookahead+preempt", "lookahead", (("preempt", True),), base="lookahead"),
    Variant("lookahead-reserve", "lookahead", (("reserve", False),)),
    Variant("lookahead-reserve+preempt", "lookahead", (("reserve", False), ("preempt", True)),
            base="lookahead-reserve"),
)


class NeverStop(LookaheadPolicy):
    """``lookahead`` whose slots run stage by stage (so mid-slot arrivals are admitted at the boundaries)
    but are never stopped."""

    def preempt(self, now_s: float, plan: Plan, exit_done: str, queues: Queues, profile: Profile) -> bool:
        return False


# -- benefit: the simulator (one run per worker process) ----------------------------------------


def simulate_variant(job: tuple[RunSpec, str, int]) -> dict:
    """``bench.sim.run_one`` with the variant's policy, plus its preemption counters."""
    from bench.sim import run_one
    from scheduler.policies import POLICIES

    spec, profile_path, bmax = job
    cls = NeverStop if spec.label == NEVER_STOP else POLICIES[spec.policy]
    policy = cls(bmax=bmax, **dict(spec.options))
    row = run_one(spec, profile_path, None, bmax, policy=policy)
    stopped = policy.stats().get("preemption") if isinstance(policy, LookaheadPolicy) else None
    row["preempted_slots"] = None if stopped is None else stopped["slots"]
    row["accuracy_lost"] = None if stopped is None else round(stopped["accuracy_lost"], 6)
    return row


def plan_runs(args: argparse.Namespace, profile: Profile, seconds: float) -> list[RunSpec]:
    from bench.sim_suites import RunSpec, preemption_workloads

    workloads = preemption_workloads(profile, args.bmax, seconds, args.quick)
    specs = [RunSpec(w, v.label, v.policy, seed, v.options)
             for w in workloads for v in VARIANTS for seed in range(args.seeds)]
    specs.sort(key=lambda s: -s.workload.total_rps)  # longest first, so the pool ends on short runs
    return specs


def benefit_table(points: Sequence[Point], rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per (workload, variant): the pooled figures, the Δ against the variant's base, and
    how many slots were stopped and what accuracy their requests gave up (points of effective accuracy)."""
    stopped: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0])  # slots, lost, wall s, runs
    for r in rows:
        s = stopped[(r["suite"], r["slo"], r["load"], r["policy"])]
        s[0] += r["preempted_slots"] or 0
        s[1] += r["accuracy_lost"] or 0.0
        s[2] += r["wall_s"]
        s[3] += 1
    by_key = {(p.suite, p.slo, p.load, p.policy): p for p in points}
    order = {v.label: i for i, v in enumerate(VARIANTS)}
    bases = {v.label: v.base for v in VARIANTS}
    preemptive = {v.label for v in VARIANTS if ("preempt", True) in v.options}
    header = ["suite", "deadlines", "load", "policy", "requests", "violation %", "P95 ms", "eff acc %", "Δ viol pt",
              "Δ eff acc pt", "preempted slots", "acc given up pt", "sim s/run"]
    table = []
    for (suite, slo, load, name), p in sorted(by_key.items(), key=lambda kv: (kv[0][:3], order[kv[0][3]])):
        base = by_key.get((suite, slo, load, bases[name])) if bases[name] else None
        slots, lost, wall_s, runs = stopped[(suite, slo, load, name)]
        table.append([suite, slo, f"{load:g}x cap", name, str(p.requests), f"{100 * p.violation_ratio:.3f}",
                      "-" if p.p95_ms is None else f"{p.p95_ms:.1f}", f"{100 * p.effective_accuracy:.2f}",
                      "-" if base is None else f"{100 * (p.violation_ratio - base.violation_ratio):+.3f}",
                      "-" if base is None else f"{100 * (p.effective_accuracy - base.effective_accuracy):+.2f}",
                      str(int(slots)) if name in preemptive else "-",
                      f"{100 * lost / p.requests:.3f}" if name in preemptive and p.requests else "-",
                      f"{wall_s / runs:.2f}"])
    return header, table


def benefit_summary(points: Sequence[Point], rows: Sequence[dict]) -> list[str]:
    """Per variant with a base and per deadline mix: the range of its Δs over the loads and suites, and
    the slots it stopped."""
    by_key = {(*p.key(), p.policy): p for p in points}
    slots: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        slots[(r["policy"], r["slo"])] += r["preempted_slots"] or 0
    lines = []
    for v in VARIANTS:
        for slo in sorted({p.slo for p in points}, key=lambda x: float(x.split("/")[0])):
            pairs = [(p, by_key[(*p.key(), v.base)]) for p in points
                     if p.policy == v.label and p.slo == slo and (*p.key(), v.base) in by_key]
            if not pairs:
                continue
            dv = [100 * (p.violation_ratio - b.violation_ratio) for p, b in pairs]
            da = [100 * (p.effective_accuracy - b.effective_accuracy) for p, b in pairs]
            lines.append(f"{v.label} vs {v.base}, {slo}, {len(pairs)} points: violation Δ "
                         f"{min(dv):+.3f}..{max(dv):+.3f} pt, effective accuracy Δ {min(da):+.2f}..{max(da):+.2f} pt, "
                         f"{slots[(v.label, slo)]} slots stopped")
    return lines


# -- cost: real slots and the policy's question ---------------------------------------------------


def _never(exit_done: str) -> bool:
    return False


def _ab_times_ms(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall times (ms) of ``repeats`` calls each of ``a`` and ``b``, interleaved and alternating which goes
    first, so drift and cache effects on a shared machine fall on both alike; GC off while timing."""
    ta, tb = np.empty(repeats), np.empty(repeats)
    gc.collect()
    gc.disable()
    try:
        for i in range(repeats):
            for fn, out in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
                t0 = time.perf_counter_ns()
                fn()
                out[i] = (time.perf_counter_ns() - t0) / 1e6
    finally:
        gc.enable()
    return ta, tb


def stage_overhead(checkpoints: dict, profile: Profile, repeats: int) -> list[dict]:
    """Per model and batch size: median wall time of a whole slot to the final exit, of the same slot
    stage by stage (never stopped), their ratio and the median of the paired differences."""
    from models.executor import executor_from_checkpoints
    from models.zoo import DEMO_THREADS
    from scheduler.clock import RealClock
    from scheduler.types import Plan, Request

    # As the live worker builds it: a real clock (so each boundary also pays the device sync and clock
    # reads the live path does) and the thread count the demo profile was measured with.
    executor = executor_from_checkpoints(checkpoints, clock=RealClock(), threads=DEMO_THREADS)
    rng = np.random.default_rng(0)
    out = []
    for m, (net, _) in checkpoints.items():
        final = net.exits[-1]
        for b in TORCH_BATCHES:
            # Random inputs: the slot's time does not depend on the values, and no data set has to load.
            x = rng.standard_normal((b, *net.input_shape)).astype(np.float32)
            plan = Plan.run(m, final, tuple(Request(f"{m}-{i}", m, 0.0, 1.0, payload=x[i]) for i in range(b)), 0.0)

            def whole(plan=plan):
                return executor.run(plan)

            def staged(plan=plan):
                return executor.run_preemptible(plan, _never)

            _ab_times_ms(whole, staged, WARMUP)
            run_ms, staged_ms = _ab_times_ms(whole, staged, repeats)
            out.append({"model": m, "batch": b, "exit": final, "questions": len(net.exits) - 1,
                        "profiled_ms": profile.latency_ms(m, final, b, "mean"),
                        "run_ms": float(np.median(run_ms)), "preemptible_ms": float(np.median(staged_ms)),
                        "ratio": float(np.median(staged_ms) / np.median(run_ms)),
                        "paired_delta_us": float(np.median(staged_ms - run_ms) * 1000.0), "repeats": repeats})
    return out


def question_times(profile: Profile, bmax: int, depths: Sequence[int] = QUESTION_DEPTHS) -> list[dict]:
    """µs per ``LookaheadPolicy.preempt`` call at the first boundary of a full batch of the last (heaviest)
    model planned to its most accurate allowed exit, the other requests queued as ``bench.overhead``
    fills a busy server (each model ``depth`` deep, 50 ms deadlines), with and without one arrival since
    the decision (only news makes the policy compute the stop value)."""
    from bench.overhead import make_queues, time_decisions
    from scheduler.policies.exits import allowed_exits
    from scheduler.types import Plan, Request

    now_s = 100.0
    m = profile.model_names[-1]
    exits = profile.model(m).exits
    allowed = allowed_exits(profile, bmax)[m]  # the policy's own rule: it answers only at these exits
    cap, first = exits[allowed[-1]], exits[allowed[0]]
    out = []
    for depth in depths:
        for news in (True, False):
            policy = LookaheadPolicy(bmax=bmax, preempt=True)
            queues = make_queues(profile, depth, now_s, 50.0, np.random.default_rng(0))
            policy.plan(now_s, queues, profile)  # the decision: tables built, its time noted
            batch = tuple(list(queues[m])[:bmax])
            queues[m].remove(batch)  # the running batch has left its queue, as in the engine
            plan = Plan.run(m, cap, batch, profile.latency_ms(m, cap, len(batch), "mean"))
            if news:
                queues[m].push(Request("news", m, now_s + 0.001, now_s + 0.021))

            def ask(policy=policy, plan=plan, queues=queues):
                return policy.preempt(now_s + 0.002, plan, first, queues, profile)

            us = time_decisions(ask, min_calls=500)
            out.append({"depth_per_model": depth, "news": news, "median_us": float(np.median(us)),
                        "p99_us": float(np.percentile(us, 99)), "calls": len(us), "stops": bool(ask())})
    return out


def overhead_table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "batch", "to exit", "questions", "profiled ms", "run ms", "run_preemptible ms", "ratio",
              "paired Δ µs"]
    return header, [[r["model"], str(r["batch"]), r["exit"], str(r["questions"]), f"{r['profiled_ms']:.3f}",
                     f"{r['run_ms']:.3f}", f"{r['preemptible_ms']:.3f}", f"{r['ratio']:.3f}",
                     f"{r['paired_delta_us']:+.1f}"] for r in rows]


def question_table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["queued per model", "arrival since decision", "median µs", "p99 µs", "calls", "answer"]
    return header, [[str(r["depth_per_model"]), "yes" if r["news"] else "no", f"{r['median_us']:.1f}",
                     f"{r['p99_us']:.1f}", str(r["calls"]), "stop" if r["stops"] else "run on"] for r in rows]


# -- the command ------------------------------------------------------------------------------------


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (defaults left out)."""
    from scheduler.paths import seed_profile_path

    parts = ["edgeserving bench sim --preemption"]
    if args.quick:
        parts.append("--quick")
    for flag, value, default in (("--profile", args.profile, str(seed_profile_path())), ("--seeds", args.seeds, 3),
                                 ("--seconds", args.seconds, None), ("--bmax", args.bmax, 10),
                                 ("--preemption-repeats", args.preemption_repeats, None)):
        if value != default:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    parts.append(f"--out {args.out}")
    return " ".join(parts)


def run_preemption(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from bench import sim_report as rep
    from bench.live import _loadavg  # the live benchmark's reading (it falls back to "unknown")
    from bench.sim import CSV_COLUMNS, run_pool, write_csv
    from bench.sim_suites import capacity_rps, noise_for_p99_ratio, seed_weights
    from scheduler.console import print_table, say, status
    from scheduler.profile import Profile

    if args.seeds < 1 or args.workers < 1:
        raise ValueError("--seeds and --workers must be >= 1")
    repeats = args.preemption_repeats or (50 if args.quick else 200)
    if repeats < 1:
        raise ValueError("--preemption-repeats must be >= 1")
    profile = Profile.load(args.profile)
    seconds = args.seconds if args.seconds is not None else (8.0 if args.quick else 30.0)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_start = _loadavg()

    # Benefit first: the pool forks before this process imports torch.
    specs = plan_runs(args, profile, seconds)
    status(f"benefit: {len(specs)} simulations on {args.workers} processes -> {out_dir}")
    rows, sim_wall_s = run_pool(simulate_variant, [(s, args.profile, args.bmax) for s in specs], args.workers,
                                "bench sim --preemption")
    rows.sort(key=lambda r: (r["suite"], r["slo"], r["load"], r["policy"], r["seed"]))
    write_csv(out_dir / "runs.csv", rows, (*CSV_COLUMNS, *CSV_EXTRA))
    points = rep.aggregate(rows)

    from models.checkpoint import load_zoo
    from models.zoo import ensure_demo_zoo

    zoo = ensure_demo_zoo(log=status)
    checkpoints = load_zoo(zoo.checkpoint_dir, zoo.models)
    status(f"cost: {repeats} interleaved A/B slots per model and batch on the demo zoo {list(zoo.models)}")
    slots = stage_overhead(checkpoints, Profile.load(zoo.profile_path), repeats)
    questions = question_times(profile, args.bmax)
    load_end = _loadavg()

    tables = {"benefit": benefit_table(points, rows), "overhead": overhead_table(slots),
              "questions": question_table(questions)}
    summary = benefit_summary(points, rows)
    ratios = [r["ratio"] for r in slots]
    summary.append(f"stage-by-stage torch slots: run_preemptible / run = {min(ratios):.3f}..{max(ratios):.3f} "
                   f"(median {float(np.median(ratios)):.3f}) over {len(slots)} (model, batch)")
    cap = capacity_rps(profile, dict(seed_weights(profile)), args.bmax)
    md = [
        f"# bench sim --preemption{' --quick' if args.quick else ''}", "",
        f"- command: `{command_line(args)}`",
        rep.date_machine_line() + f"; load average (1/5/15 min) {load_start} at the start, {load_end} at the end",
        f"- benefit: profile {profile.name} ({args.profile}), 3:2:1 mix, Bmax {args.bmax}, capacity {cap:.0f} "
        f"requests/s; deadlines 20/50/200 and 10/50/200 ms (equal shares); noise {noise_for_p99_ratio(profile):.3f} "
        f"(p99/mean 1.3); {seconds:g} simulated s per run, {args.seeds} seeds pooled per point; {len(specs)} runs "
        f"in {sim_wall_s:.0f} s on {args.workers} processes",
        f"- cost: demo zoo {list(zoo.models)} ({zoo.source}), profile {zoo.profile_path}, 1 torch thread, real clock; "
        f"each slot to the final exit, {WARMUP} warm-up then {repeats} interleaved A/B calls; the question on the "
        f"seed profile (Bmax {args.bmax})", "",
        "## Benefit (simulator)", "", rep.markdown_table(*tables["benefit"]), "",
        *[f"- {line}" for line in summary], "",
        "## Cost: whole slot vs stage by stage, never stopped (real torch, CPU)", "",
        rep.markdown_table(*tables["overhead"]), "",
        "## Cost: the policy's question (`LookaheadPolicy.preempt`)", "",
        rep.markdown_table(*tables["questions"]), "",
    ]
    (out_dir / "preemption.md").write_text("\n".join(md))
    if args.json:
        print(json.dumps({"runs": rows, "overhead": slots, "questions": questions, "sim_wall_s": sim_wall_s},
                         indent=2))
        return 0
    print_table(f"benefit: lookahead with preemption off/on, {args.seeds} seeds pooled",
                *tables["benefit"])
    print_table("cost: TorchExecutor.run vs run_preemptible(never), medians (demo zoo, 1 thread)",
                *tables["overhead"])
    print_table("cost: LookaheadPolicy.preempt per call", *tables["questions"])
    for line in summary:
        say(line)
    say(f"{len(specs)} simulations in {sim_wall_s:.0f} s; wrote {out_dir / 'runs.csv'} and {out_dir / 'preemption.md'}")
    return 0
