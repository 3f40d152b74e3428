"""``edgeserving demo`` (``make demo``): the whole system, live, on an embedded default.

1. checks the environment; 2. makes sure the demo zoo is there (the committed checkpoints and CPU
profile, else a cached copy, else trains and profiles it once); 3. starts a local Ray and Ray Serve
from ``ray_config.yaml``: two worker applications, one with the reference policy and one with the
project's best policy (``REFERENCE_POLICY`` / ``DEFAULT_POLICY``); 4. replays the bundled bursty
trace (``bench/traces/live_bursty.csv``, about 60 s) open-loop against each, after the same short
warm-up; 5. prints the side-by-side table; 6. writes a PNG (latency CDF and exit mix); 7. shows
where ``/metrics`` is and what it counted; 8. shuts everything down. ``--quick`` replays 20 s.
The live machinery is ``bench.live_harness`` (shared with ``bench live``).

On a CPU box the demo zoo's slots (1-5 ms) are small beside the HTTP path's CPU per request, so on a
quiet machine both policies keep nearly every deadline there. Steps 3-6 therefore also run both
policies on an **emulated GPU** (``bench.live_emulated``: the seed workload's ResNet-50/101/152 GPU
profile served by the profile executor, every slot time and deadline dilated x40 so the device, not
the HTTP path, is the bottleneck) at 1.5x that device's capacity, where the choice of model, exit and
batch decides which deadlines are kept (``--no-emulated`` skips it).
"""

from __future__ import annotations

import argparse
import json
import time

HELP = "run the main job live: Ray Serve, a bursty trace, the reference vs the best policy, table and plot"

QUICK_SECONDS = 20.0
WARMUP_S = 3.0
# The emulated-GPU part: the seed profile dilated x40, 1.5x its capacity, 20/50 ms deadline classes (x40).
EMULATED_LOAD = 1.5
EMULATED_SECONDS = 20.0
EMULATED_DEADLINES_MS = (20.0, 50.0)
EMULATED_SEED = 2026


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help=f"replay only the first {QUICK_SECONDS:g} s of the trace")
    p.add_argument("--trace", default=None, help="trace CSV (default: the bundled bursty trace)")
    p.add_argument("--seconds", type=float, default=None, help="replay only the first S seconds of the trace")
    p.add_argument("--config", default=None, help="Ray Serve config (default: ray_config.yaml)")
    p.add_argument("--policy", default=None, help="the policy to compare (default: the project's best)")
    p.add_argument("--no-emulated", action="store_true", help="skip the emulated-GPU comparison (steps 3-6)")
    p.add_argument("--out", default="out/demo", help="where the plot and results go (default out/demo)")
    p.add_argument("--json", action="store_true", help="print both summaries as JSON at the end")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scheduler.console import status
    from scheduler.policies import DEFAULT_POLICY, REFERENCE_POLICY, make_policy

    t0 = time.perf_counter()
    best = args.policy or DEFAULT_POLICY
    make_policy(best)
    if best == REFERENCE_POLICY:
        raise ValueError(f"--policy {best} is the reference itself; pick another policy to compare with it")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    status("1/8 environment: " + _environment())
    status("2/8 demo zoo: " + _zoo())
    rows, trace_note = _trace(args)
    from bench.live_harness import LiveHarness

    emu = None if args.no_emulated else _emulated(out)
    if emu is None and not args.no_emulated:
        from scheduler.paths import seed_profile_path

        status(f"    the seed GPU profile is not at {seed_profile_path()}: the emulated-GPU comparison is skipped")
    gpus = 2 if emu is None else 4
    status(f"3/8 starting Ray ({gpus} logical GPUs) and Ray Serve from {args.config or 'ray_config.yaml'}: "
           f"'{REFERENCE_POLICY}' (the reference) and '{best}' (ours), one worker each"
           + ("" if emu is None else f"; the same two on the emulated GPU ({emu[0].describe()})"))
    with LiveHarness(args.config, gpus=gpus, log=lambda m: status("    " + m)) as h:
        targets = [h.deploy_edgeserving(REFERENCE_POLICY, REFERENCE_POLICY), h.deploy_edgeserving(best, best)]
        emu_targets = [] if emu is None else [
            h.deploy_edgeserving(f"gpu-{p}", p, p, **emu[1]) for p in (REFERENCE_POLICY, best)]
        status(f"4/8 replaying {trace_note} against each, open loop, after a {WARMUP_S:g} s warm-up")
        reports = [_replay(h, t, rows) for t in targets]
        # The profile executor has nothing to warm up, and the zoo's warm-up trace names the zoo's models.
        emu_reports = [] if emu is None else [_replay(h, t, emu[2], grace_ms=emu[0].dilation * 2000.0, warmup=False)
                                              for t in emu_targets]
        _table(reports, len(rows), "the demo zoo on this machine's CPU")
        if emu is not None:
            _table(emu_reports, len(emu[2]), f"an emulated GPU, {emu[3]}")
        png = _plot(reports, out, trace_note)
        status(f"6/8 wrote {png}")
        if emu is not None:
            status(f"    and {_plot(emu_reports, out, emu[3], 'demo-emulated-gpu.png')}")
        _metrics(h, targets + emu_targets)
        status("8/8 shutting down Ray Serve and Ray")
    for rep in reports:
        rep.write_results(out / f"results-{rep.policy}.csv")
    for rep in emu_reports:
        rep.write_results(out / f"results-emulated-gpu-{rep.policy}.csv")
    status(f"done in {time.perf_counter() - t0:.0f} s; per-request results in {out}")
    if args.json:
        print(json.dumps([rep.to_json() for rep in reports], indent=2))
    return 0


def _environment() -> str:
    import os
    import platform

    import ray
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = f"{gpus} GPU(s)" if gpus else "no GPU: each worker runs the models on one CPU thread"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"Python {platform.python_version()}, torch {torch.__version__}, Ray {ray.__version__}, "
            f"{os.cpu_count()} cores (load average {load}), {device}")


def _zoo() -> str:
    from models.zoo import ensure_demo_zoo
    from scheduler.console import status

    zoo = ensure_demo_zoo(log=lambda m: status("    " + m))
    return f"{', '.join(zoo.models)} ({zoo.source} copy: {zoo.checkpoint_dir}, profile {zoo.profile_path})"


def _trace(args: argparse.Namespace) -> tuple[list, str]:
    from bench.live_workload import TRACE_PATH, describe, load_rows
    from workloads.replay import bound_rows

    seconds = QUICK_SECONDS if args.quick and args.seconds is None else args.seconds
    rows = bound_rows(load_rows(args.trace), max_seconds=seconds)
    if not rows:
        raise ValueError("the trace has no rows in the chosen window")
    what = args.trace or f"the bundled trace {TRACE_PATH.name} ({describe()})"
    cut = f", first {seconds:g} s" if seconds else ""
    return rows, f"{len(rows)} requests of {what}{cut}"


def _emulated(out):
    """(emulation, worker settings, trace rows, description) of the emulated-GPU comparison; None without
    the seed profile (``../shared``)."""
    import numpy as np

    from bench.live_emulated import DEFAULT_DILATION, Emulation
    from scheduler.paths import seed_profile_path

    if not seed_profile_path().exists():
        return None
    emu = Emulation.load(None, DEFAULT_DILATION)
    deadlines = [d * emu.dilation for d in EMULATED_DEADLINES_MS]
    args = emu.worker_args(emu.write_profile(out), max(deadlines))
    rows = emu.rows(EMULATED_LOAD, EMULATED_SECONDS, EMULATED_DEADLINES_MS, "poisson",
                    np.random.default_rng(EMULATED_SEED))
    note = (f"{EMULATED_LOAD:g}x its capacity ({EMULATED_LOAD * emu.capacity_rps():.1f} req/s Poisson, "
            f"{EMULATED_SECONDS:g} s), deadlines {'/'.join(f'{d:g}' for d in deadlines)} ms")
    return emu, args, rows, note


def _replay(h, target, rows, grace_ms: float = 2000.0, warmup: bool = True):
    from bench.live_workload import generate_rows
    from scheduler.console import status

    if warmup:
        h.replay(target, generate_rows(10.0, WARMUP_S, seed=1), description=f"warm-up: {target.label}")
    report = h.replay(target, rows, description=f"{target.label}", grace_ms=grace_ms)
    s = report.summary()
    status(f"    {target.label}: {100 * s['violation_ratio']:.1f}% of deadlines missed, "
           f"P95 {s['p95_ms']:.1f} ms; {report.lag.describe() if report.lag else ''}")
    return report


def _table(reports, n: int, where: str) -> None:
    from bench.live_report import comparison_rows
    from scheduler.console import print_table, say, status

    status(f"5/8 side by side on {where} (each request judged on its client-side latency: send to answer, "
           "proxy included)")
    header, rows = comparison_rows([r.summary() for r in reports])
    keep = [header.index(c) for c in ("configuration", "requests", "violation %", "P50 ms", "P95 ms", "accuracy %",
                                      "eff. accuracy %")]
    print_table(f"edgeserving demo: {n} requests, live on Ray Serve, {where}", [header[i] for i in keep],
                [[r[i] for i in keep] for r in rows])
    for rep in reports:
        say(f"exit mix, {rep.policy}: {rows[reports.index(rep)][-1]}")


def _plot(reports, out, note: str, name: str = "demo.png"):
    from bench.live_report import write_plot

    return write_plot(reports, out / name, f"edgeserving demo: {note}")


def _metrics(h, targets) -> None:
    from bench.live_harness import metric_total
    from scheduler.console import say, status

    status("7/8 Prometheus metrics, live while the demo runs:")
    for target in targets:
        m = h.scrape(target)
        received = metric_total(m, "edgeserving_requests_received_total")
        by_outcome = {o: int(metric_total(m, "edgeserving_requests_total", outcome=o))
                      for o in ("MET", "LATE", "REJECTED", "DROPPED", "FAILED")}
        say(f"  {target.metrics_url}: {int(received)} requests received (warm-up included), outcomes "
            f"{by_outcome} (the worker's own verdicts, on its clock)")
    say("  deploy/prometheus.yml scrapes these; deploy/grafana-dashboard.json charts them")
