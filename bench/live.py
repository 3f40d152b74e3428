"""``edgeserving bench live``: one trace, one run, three configurations on one local Ray Serve.

1. edgeserving with the reference policy (``REFERENCE_POLICY``);
2. edgeserving with the project's best policy (``DEFAULT_POLICY``);
3. plain Ray Serve (``bench.plain_batched``): one deployment per model, fractional ``num_gpus``,
   ``@serve.batch``, the default router, no deadlines, no exits. With several ``--plain-batching``
   settings each is replayed (retuned live between replays) and the one with the fewest violations
   (then the lowest P95) is "plain Ray Serve" for the target: the baseline gets its best tuning on
   this very trace.

Every configuration is warmed up with the same short Poisson trace, then replays the same trace
open-loop; each request is judged client-side (MET when its client-observed latency is within its
deadline) for all three alike, since plain Ray Serve knows no deadlines. The trace goes in
segments (``--segment-s``, default 10 s): every configuration replays segment k before any
replays segment k+1, in an order rotated per segment, so the slow drifts of a shared machine's
background load fall on all configurations alike. A burst that spans a segment boundary is cut
there for every configuration the same way.
Outputs: the side-by-side table, issue 6's and issue 7's live targets, a PNG (latency CDF and exit
mix), per-configuration results CSVs and ``live.json`` / ``live.md`` in ``--out``.

``--emulate [PROFILE]`` (``bench.live_emulated``) replaces the torch demo zoo with an emulated device
that is the bottleneck, as a GPU is: every configuration serves the profile's models on sleeps of
their profiled slot times, all times dilated, at several loads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELP = "live comparison on Ray Serve: reference policy, best policy and plain Ray Serve on one trace"

# The plain baseline's @serve.batch settings tried by --tune-plain (max_batch_size:batch_wait_timeout_ms).
PLAIN_GRID = ("1:0", "4:1", "8:2", "8:5", "16:10")
PLAIN_DEFAULT = "8:5"  # the grid's best on the bundled trace (`bench live --tune-plain`, BENCHMARKS.md)
WARMUP_RATE_RPS = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", default=None, help="trace CSV (default: the bundled bursty trace, bench/traces)")
    p.add_argument("--seconds", type=float, default=None, help="replay only the first S seconds of the trace")
    p.add_argument("--config", default=None, help="Ray Serve config (default: ray_config.yaml)")
    p.add_argument("--policy", default=None, help="the best policy (default: the registry's DEFAULT_POLICY), a name or "
                   "a spec with options, e.g. lookahead:latency_target=0.5")
    p.add_argument("--reference", default=None, help="the reference policy (default: REFERENCE_POLICY), name or spec")
    p.add_argument("--plain-batching", default=None,
                   help=f"plain Ray Serve's @serve.batch settings MAX_BATCH:WAIT_MS[,...] (default {PLAIN_DEFAULT}; "
                        "with --emulate see below); with several, each is replayed and the best one is the baseline")
    p.add_argument("--tune-plain", action="store_true", help=f"try the grid {','.join(PLAIN_GRID)} for plain Ray Serve")
    p.add_argument("--repeats", type=int, default=1, help="replays of the trace per configuration, order rotated "
                   "(default 1); results pool over repeats")
    p.add_argument("--segment-s", type=float, default=None,
                   help="replay the trace in segments of S seconds, every configuration per segment, order rotated, "
                        "so slow drifts of a shared machine hit all alike (default 10; 0: the whole trace at once; "
                        "with --emulate the default is 0: each load's trace whole)")
    p.add_argument("--warmup-s", type=float, default=3.0,
                   help="seconds of light Poisson warm-up per configuration (default 3)")
    p.add_argument("--quick", action="store_true", help="the first 20 s of the trace, one repeat")
    from bench.live_harness import add_ingress_argument, add_propagation_argument

    add_ingress_argument(p)
    add_propagation_argument(p)
    p.add_argument("--samples-per-call", type=int, default=1, metavar="N",
                   help="send each trace row as one call of N samples (Open Inference Protocol, [N, *input_shape], "
                        "the row's deadline for each; each sample is one request in the results), so the device, "
                        "not the HTTP path, carries the load (default 1: one /v1 request per row)")
    p.add_argument("--out", default="out/bench-live", help="output folder (default out/bench-live)")
    p.add_argument("--json", action="store_true", help="print the summaries and verdicts as JSON")
    from bench.live_emulated import add_arguments as add_emulation

    add_emulation(p.add_argument_group("emulated device (--emulate)"))


def run(args: argparse.Namespace) -> int:
    if args.emulate is not None:
        from bench import live_emulated

        return live_emulated.run(args)
    from bench.live_harness import LiveHarness
    from bench.live_workload import WEIGHTS, load_rows
    from bench.plain_batched import Batching
    from scheduler.console import status
    from workloads.replay import bound_rows

    reference, best = policies(args)
    grid = [Batching.parse(t) for t in plain_settings(args, PLAIN_GRID, PLAIN_DEFAULT)]
    if args.segment_s is None:
        args.segment_s = 10.0
    seconds = 20.0 if args.quick and args.seconds is None else args.seconds
    rows = bound_rows(load_rows(args.trace), max_seconds=seconds)
    if not rows:
        raise ValueError("the trace has no rows in the chosen window")
    repeats = 1 if args.quick else args.repeats
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_call = f" (calls of {args.samples_per_call} samples)" if args.samples_per_call > 1 else ""
    status(f"bench live: {len(rows)} requests{per_call} over {rows[-1].arrival_s:.0f} s, configurations: "
           f"{reference}, {best}, plain Ray Serve ({', '.join(b.label() for b in grid)}); load average {_loadavg()}")
    with LiveHarness(args.config, gpus=3, log=status, ingress=args.ingress,
                     propagate_deadlines=args.propagate_deadlines, samples_per_call=args.samples_per_call) as h:
        targets = deploy_all(h, reference, best, grid[0])
        warm = warmup_rows(WEIGHTS, WARMUP_RATE_RPS, 50.0, args.warmup_s)
        replays = replay_all(h, targets, grid, rows, repeats, warm, args.segment_s)
    result = _report(replays, grid, out, reference, best, len(rows), time.perf_counter() - t0, args)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def policies(args: argparse.Namespace) -> tuple[str, str]:
    """(reference, best) policy names, checked before Ray starts; ``--repeats`` too."""
    from scheduler.policies import DEFAULT_POLICY, REFERENCE_POLICY, make_policy

    best = args.policy or DEFAULT_POLICY
    reference = args.reference or REFERENCE_POLICY
    for name in (best, reference):
        make_policy(name)  # an unknown name fails before Ray starts
    if best == reference:
        raise ValueError(f"the best policy and the reference are both {best!r}; pick two different policies")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if getattr(args, "samples_per_call", 1) < 1:
        raise ValueError(f"--samples-per-call must be >= 1, got {args.samples_per_call}")
    return reference, best


def plain_settings(args: argparse.Namespace, grid: tuple[str, ...], default: str) -> list[str]:
    """The plain baseline's batching settings as given (``--tune-plain``: the grid)."""
    return list(grid) if args.tune_plain else (args.plain_batching or default).split(",")


def deploy_all(h: Any, reference: str, best: str, plain: Any) -> dict[str, Any]:
    """The three configurations on the harness's cluster: reference and best policy, plain Ray Serve."""
    return {"reference": deploy_policy(h, reference), "best": deploy_policy(h, best), "plain": h.deploy_plain(plain)}


def deploy_policy(h: Any, spec: str) -> Any:
    """edgeserving with the policy ``spec`` (a name, or ``name:key=value...`` whose options become the worker's
    ``policy_options``), as an application named after the spec."""
    from scheduler.policies.spec import worker_policy_args

    args = worker_policy_args(spec)
    name = args.pop("policy")
    return h.deploy_edgeserving(spec if name == spec else _slug(spec), name, label=spec, **args)


def warmup_rows(weights: dict[str, float], rate_rps: float, deadline_ms: float, seconds: float) -> list:
    """The light Poisson warm-up every configuration gets before its first replay (none for ``seconds`` <= 0)."""
    import numpy as np

    from workloads.generators import generate

    if seconds <= 0:
        return []
    total = sum(weights.values())
    return generate("poisson", {m: rate_rps * w / total for m, w in weights.items()}, deadline_ms,
                    max(seconds, 0.5), np.random.default_rng(12345))


def segments(rows: list, segment_s: float | None) -> list[list]:
    """The trace cut into consecutive windows of ``segment_s`` seconds, each re-based to start at 0."""
    import dataclasses

    if not segment_s:
        return [list(rows)]
    if segment_s <= 0:
        raise ValueError(f"--segment-s must be > 0, got {segment_s}")
    out: dict[int, list] = {}
    for r in rows:
        k = int(r.arrival_s // segment_s)
        out.setdefault(k, []).append(dataclasses.replace(r, arrival_s=r.arrival_s - k * segment_s))
    return [out[k] for k in sorted(out)]


@dataclass
class Replays:
    """Every replay of one run, by configuration key ("reference", "best", "plain B=..,wait=..", or the keys
    of the edgeserving targets given)."""

    runs: dict[str, list]  # the ReplayReports, one per segment and repeat
    cpu: dict[str, dict[str, float]]  # CPU seconds by component (see _add_cpu)
    predictions: dict[str, dict[str, float]]  # edgeserving keys: the policy's slot predictions (worker metrics)
    transit: dict[str, dict[str, float]] = field(default_factory=dict)  # edgeserving keys, propagated deadlines


def replay_all(h: Any, targets: dict[str, Any], grid: list, rows: list, repeats: int, warm: list,
               segment_s: float | None, turn: int = 0, grace_ms: float | None = None) -> Replays:
    """Warm every configuration up with ``warm`` (may be empty), then replay ``rows`` against each
    (``grace_ms``: the client's patience beyond each deadline, default the replayer's). The configurations
    are ``targets``' edgeserving ones, under their keys, and with ``targets["plain"]`` one per setting of
    ``grid`` (retuned between replays).

    The trace goes in segments; every configuration replays a segment before the next one starts, in
    an order rotated per segment (starting at ``turn``), so all of them meet the same background load
    of a shared machine."""
    from bench import live_report as lr
    from bench.fidelity import prediction_error
    from bench.live_harness import cpu_snapshot
    from scheduler.console import status

    patience = {} if grace_ms is None else {"grace_ms": grace_ms}
    plain_keys = {f"plain {b.label()}": b for b in grid}
    keys = [k for k, t in targets.items() if t.kind == "edgeserving"] + list(plain_keys)
    runs: dict[str, list] = {k: [] for k in keys}
    cpu: dict[str, dict[str, float]] = {k: {} for k in keys}

    def target_for(key: str) -> Any:
        if key in plain_keys:
            h.set_plain_batching(plain_keys[key])
            return targets["plain"]
        return targets[key]

    for key in keys if warm else ():
        h.replay(target_for(key), warm, description=f"warm-up: {key}", **patience)
    edge = [k for k in keys if k not in plain_keys]
    metrics_before = {k: h.scrape(targets[k]) for k in edge}
    parts = segments(rows, segment_s)
    for rep in range(repeats):
        for i, part in enumerate(parts):
            order = keys[turn % len(keys):] + keys[:turn % len(keys)]
            turn += 1
            status(f"repeat {rep + 1}/{repeats}, segment {i + 1}/{len(parts)} ({len(part)} requests): "
                   f"{', '.join(order)} (load average {_loadavg()})")
            for key in order:
                target = target_for(key)
                before = cpu_snapshot()
                report = h.replay(target, part, description=key, **patience)
                _add_cpu(cpu[key], before, cpu_snapshot(), target)
                if report.lag is not None and report.lag.fell_behind:
                    status(f"  {key}: {report.lag.describe()}")
                runs[key].append(report)
    metrics_after = {k: h.scrape(targets[k]) for k in edge}
    predictions = {k: prediction_error(metrics_before[k], metrics_after[k]) for k in edge}
    transit = {k: lr.transit(metrics_before[k], metrics_after[k]) for k in edge if h.propagates(targets[k])}
    return Replays(runs, cpu, predictions, transit)


def _add_cpu(into: dict[str, float], before: dict[str, float], after: dict[str, float], target: Any) -> None:
    """CPU seconds one replay cost, by component: the configuration's own replicas, the Serve proxy, the
    client (the replayer) and the rest of Ray (controller, GCS, raylet, other apps' idle replicas)."""
    from bench.plain_batched import MODEL_APP_PREFIX

    app = target.app if target.kind == "edgeserving" else MODEL_APP_PREFIX
    mine = (f"ray::ServeReplica:{app}:",) if target.kind == "edgeserving" else (
        f"ray::ServeReplica:{app}", "ray::EmulatedDevice")  # the plain models' shared emulated device
    for title, seconds in after.items():
        used = seconds - before.get(title, 0.0)
        part = ("server" if title.startswith(mine) else "proxy" if title.startswith("ray::ProxyActor")
                else "client" if title.startswith("client") else "rest of Ray")
        into[part] = into.get(part, 0.0) + max(used, 0.0)


def pooled(reports: list, label: str) -> Any:
    """Replays (segments, repeats) of one configuration as one report (results concatenated, ids made unique)."""
    import dataclasses

    import numpy as np

    if len(reports) == 1:
        return dataclasses.replace(reports[0], policy=label)
    results = [dataclasses.replace(r, request=dataclasses.replace(r.request, id=f"{k}:{r.request.id}"))
               for k, rep in enumerate(reports) for r in rep.results]
    lags = np.concatenate([rep.send_lag_ms for rep in reports if rep.send_lag_ms is not None])
    from workloads.replay import SendLag

    first = reports[0]
    return dataclasses.replace(first, policy=label, results=results, trace_rows=sum(r.trace_rows for r in reports),
                               lag=SendLag.of(lags, first.lag.behind_ms) if first.lag else None, send_lag_ms=lags,
                               client_late=sum(r.client_late for r in reports))


@dataclass
class Comparison:
    """One trace's side-by-side result: what ``compare`` printed, as data and markdown."""

    title: str
    summaries: dict[str, dict[str, Any]]  # configuration key -> summary (scheduler.summary.summarize)
    labels: dict[str, str]  # configuration key -> its name in tables
    plain: str  # the key of the plain setting the targets are judged against
    verdicts: list[Any]  # live_report.Verdict: issue 6, issue 7
    markdown: str
    png: Path

    def to_json(self, replays: Replays, reports: dict[str, Any]) -> dict[str, Any]:
        return {"plain_baseline": self.labels[self.plain],
                "configurations": [{**self.summaries[k], "replay": reports[k].to_json()["replay"],
                                    "cpu_s": replays.cpu[k], "slot_predictions": replays.predictions.get(k),
                                    "transit": replays.transit.get(k)}
                                   for k in replays.runs],
                "verdicts": [v.to_dict() for v in self.verdicts]}


def compare(replays: Replays, grid: list, reference: str, best: str, title: str, out: Path, stem: str = ""
            ) -> tuple[Comparison, dict[str, Any]]:
    """Print the tables and verdicts of one trace's replays, write its PNG and per-request CSVs (names end in
    ``stem``); returns the comparison and the pooled report per configuration key."""
    from rich.markup import escape

    from bench import live_report as lr
    from scheduler.console import print_table, say

    runs, cpu = replays.runs, replays.cpu
    labels = {"reference": reference, "best": best, **{f"plain {b.label()}": f"plain Ray Serve {b.label()}"
                                                       for b in grid}}
    reports = {key: pooled(runs[key], labels[key]) for key in runs}
    plains = [k for k in runs if k.startswith("plain")]
    chosen = min(plains, key=lambda k: (reports[k].summary()["violation_ratio"],
                                        reports[k].summary()["p95_ms"] or float("inf")))
    summaries = {k: r.summary() for k, r in reports.items()}
    header, table = lr.comparison_rows(list(summaries.values()), [r.lag for r in reports.values()])
    print_table(title, header, [[escape(c) for c in row] for row in table])  # exit mixes hold brackets
    cpu_header, cpu_rows = lr.cpu_rows({labels[k]: v for k, v in cpu.items()},
                                       {labels[k]: summaries[k]["requests"] for k in runs})
    print_table("CPU per request, ms (all processes of this run; 2 cores = 2000 ms per second)", cpu_header, cpu_rows)
    verdicts = [lr.plain_target(summaries[chosen], summaries["best"]),
                lr.reference_target(summaries["reference"], summaries["best"])]
    lines = [lr.prediction_line(labels[k], pred) for k, pred in replays.predictions.items()]
    lines += [lr.transit_line(labels[k], t) for k, t in replays.transit.items()]
    if len(runs["reference"]) > 1:
        lines.append(lr.segment_line([labels["reference"], labels["best"], labels[chosen]],
                                     [reports["reference"], reports["best"], reports[chosen]]))
    if len(plains) > 1:
        lines.append(f"plain Ray Serve baseline for the target: {labels[chosen]} (fewest violations of "
                     f"{len(plains)} settings)")
    lines += [v.line() for v in verdicts]
    for line in lines:
        say(line)
    png = lr.write_plot([reports["reference"], reports["best"], reports[chosen]], out / f"live{stem}.png", title)
    for rep in reports.values():
        rep.write_results(out / f"results-{_slug(rep.policy)}{stem}.csv")
    md = (f"{title}\n\n{lr.markdown(header, table)}\n\n{lr.markdown(cpu_header, cpu_rows)}\n\n"
          + "\n".join(f"- {line}" for line in lines) + "\n")
    return Comparison(title, summaries, labels, chosen, verdicts, md, png), reports


def _report(replays: Replays, grid: list, out: Path, reference: str, best: str, n_rows: int, wall_s: float,
            args: argparse.Namespace) -> dict[str, Any]:
    from scheduler.console import say

    repeats = 1 if args.quick else args.repeats
    path = "proxy included" if args.ingress == "proxy" else "straight to the replicas' ports (direct ingress)"
    if args.propagate_deadlines:
        path += "; deadlines propagated"
    samples = args.samples_per_call
    calls = f"{n_rows} requests" if samples == 1 else \
        f"{n_rows} calls of {samples} samples = {n_rows * samples} requests"
    title = (f"bench live: {calls} x {repeats} repeat(s), judged client-side "
             f"(latency from send to answer, {path})")
    comparison, reports = compare(replays, grid, reference, best, title, out)
    (out / "live.md").write_text(comparison.markdown)
    say(f"wrote {comparison.png}, {out / 'live.md'} and the per-request results in {out} ({wall_s:.0f} s in all)")
    result = {"requests": n_rows * samples, "calls": n_rows, "samples_per_call": samples, "repeats": repeats,
              "segment_s": args.segment_s, "judge": "client",
              "ingress": args.ingress, "propagate_deadlines": args.propagate_deadlines,
              "wall_s": wall_s, "load_average": _loadavg(), **comparison.to_json(replays, reports)}
    (out / "live.json").write_text(json.dumps(result, indent=2))
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
