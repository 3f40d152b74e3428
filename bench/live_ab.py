"""``edgeserving bench live-ab``: two settings of the edgeserving worker, side by side on one trace.

Both run as applications of one local Ray Serve (the config's worker, the same policy), replay the
same trace in segments, interleaved and in an order rotated per segment (as ``bench live`` does), so
a shared machine's drifts fall on both alike. Each request is judged client-side. Reports the
violation ratio, P50/P95/P99 and the workers' measured slot times, per setting.

    edgeserving bench live-ab --a gil_switch_interval_ms=null --b gil_switch_interval_ms=0.5
    edgeserving bench live-ab --a ingress=proxy --b ingress=direct   # the path to the worker, not a worker arg
    edgeserving bench live-ab --a propagate_deadlines=false --b propagate_deadlines=true   # the client's header
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HELP = "A/B of two worker settings (e.g. the GIL switch interval) on one live trace, interleaved"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--a", required=True, metavar="KEY=VALUE[:KEY=VALUE...]",
                   help="worker args of setting A, over the config's (JSON values: gil_switch_interval_ms=null); "
                        "ingress=proxy or ingress=direct sets the path to it instead, propagate_deadlines=true "
                        "makes the client send each request's send time (X-Request-Sent-At)")
    p.add_argument("--b", required=True, metavar="KEY=VALUE[:KEY=VALUE...]", help="worker args of setting B")
    p.add_argument("--policy", default=None, help="policy (name or spec) both run (default: the config's)")
    p.add_argument("--trace", default=None, help="trace CSV (default: the bundled bursty trace, bench/traces)")
    p.add_argument("--seconds", type=float, default=None, help="replay only the first S seconds of the trace")
    p.add_argument("--config", default=None, help="Ray Serve config (default: ray_config.yaml)")
    p.add_argument("--repeats", type=int, default=2, help="replays of the trace per setting (default 2)")
    p.add_argument("--segment-s", type=float, default=10.0, help="segment length, seconds (default 10)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="seconds of light warm-up per setting (default 3)")
    from bench.live_harness import add_ingress_argument

    add_ingress_argument(p)
    p.add_argument("--out", default="out/bench-live-ab", help="output folder (default out/bench-live-ab)")
    p.add_argument("--json", action="store_true", help="print the summaries as JSON")


def settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Both settings' worker args (policy included), checked against the config before Ray starts."""
    from scheduler.policies.spec import parse_options, worker_policy_args
    from scheduler.serving import deploy
    from scheduler.serving.config import parse_config
    from scheduler.serving.ingress import INGRESS_MODES

    base = deploy.worker_app(deploy.load_serve_config(args.config or deploy.DEFAULT_CONFIG))["args"]
    policy = worker_policy_args(args.policy) if args.policy else {}
    out = {}
    for key, text in (("A", args.a), ("B", args.b)):
        extra = {**policy, **parse_options(text)}
        if not extra:
            raise ValueError(f"--{key.lower()} sets nothing: give KEY=VALUE")
        if extra.get("ingress", args.ingress) not in INGRESS_MODES:
            raise ValueError(f"--{key.lower()}: ingress must be one of {', '.join(INGRESS_MODES)}, "
                             f"got {extra['ingress']!r}")
        if not isinstance(extra.get("propagate_deadlines", False), bool):
            raise ValueError(f"--{key.lower()}: propagate_deadlines must be true or false, "
                             f"got {extra['propagate_deadlines']!r}")
        parse_config({**base, **_worker_args(extra)}, f"--{key.lower()}")
        out[f"{key}: {text}"] = extra
    if args.a == args.b:
        raise ValueError("--a and --b are the same setting")
    if args.repeats < 1 or args.segment_s <= 0:
        raise ValueError("--repeats must be >= 1 and --segment-s > 0")
    return out


CLIENT_KEYS = ("ingress", "propagate_deadlines")  # how requests reach the worker, not its config


def _worker_args(setting: dict[str, Any]) -> dict[str, Any]:
    """A setting's worker args: all but ``CLIENT_KEYS``."""
    return {k: v for k, v in setting.items() if k not in CLIENT_KEYS}


def run(args: argparse.Namespace) -> int:
    from bench import live_report as lr
    from bench.live import WARMUP_RATE_RPS, _loadavg, _slug, pooled, replay_all, warmup_rows
    from bench.live_harness import LiveHarness
    from bench.live_workload import WEIGHTS, load_rows
    from scheduler.console import print_table, say, status
    from workloads.replay import bound_rows

    chosen = settings(args)
    rows = bound_rows(load_rows(args.trace), max_seconds=args.seconds)
    if not rows:
        raise ValueError("the trace has no rows in the chosen window")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load_before = _loadavg()
    status(f"bench live-ab: {len(rows)} requests x {args.repeats} repeat(s); {' vs '.join(chosen)}; "
           f"load average {load_before}")
    paths = {label: extra.get("ingress", args.ingress) for label, extra in chosen.items()}
    # Direct ingress is a switch of the whole Ray instance; a setting on the proxy path stays there.
    mode = "direct" if "direct" in paths.values() else "proxy"
    with LiveHarness(args.config, gpus=len(chosen), log=status, ingress=mode) as h:
        targets = {}
        for label, extra in chosen.items():
            extra = _worker_args(extra)
            policy = extra.pop("policy", None) or h.worker_args.get("policy")
            targets[label] = h.deploy_edgeserving(_slug(label), policy, label=label,
                                                  via_proxy=paths[label] == "proxy",
                                                  propagate_deadlines=chosen[label].get("propagate_deadlines"),
                                                  **extra)
        warm = warmup_rows(WEIGHTS, WARMUP_RATE_RPS, 50.0, args.warmup_s)
        replays = replay_all(h, targets, [], rows, args.repeats, warm, args.segment_s)
    slots = replays.predictions
    reports = {label: pooled(replays.runs[label], label) for label in replays.runs}
    summaries = {label: r.summary() for label, r in reports.items()}
    header, table = lr.comparison_rows(list(summaries.values()), [r.lag for r in reports.values()])
    header, table = header[:-1], [row[:-1] for row in table]  # both run the same policy: no exit mix column
    header.append("slot measured mean ms")
    for label, row in zip(summaries, table, strict=True):
        row.append(f"{slots[label]['measured_mean_ms']:.2f}" if slots[label].get("slots") else "-")
    title = (f"bench live-ab: {len(rows)} requests x {args.repeats} repeat(s), interleaved, judged client-side, "
             f"ingress {' / '.join(paths.values())}")
    print_table(title, header, table)
    transit_lines = [lr.transit_line(label, t) for label, t in replays.transit.items()]
    for line in transit_lines:
        say(line)
    wall_s = time.perf_counter() - t0
    load_after = _loadavg()
    say(f"load average {load_before} before, {load_after} after; {wall_s:.0f} s")
    notes = "".join(f"- {line}\n" for line in transit_lines)
    (out / "live_ab.md").write_text(f"{title}\n\n{lr.markdown(header, table)}\n\n{notes}- load average "
                                    f"{load_before} before, {load_after} after; {wall_s:.0f} s\n")
    result = {"requests": len(rows), "repeats": args.repeats, "segment_s": args.segment_s, "wall_s": wall_s,
              "ingress": paths,
              "load_average": [load_before, load_after],
              "settings": [{"label": label, "worker_args": chosen[label], **summaries[label],
                            "slots": slots[label], "transit": replays.transit.get(label)} for label in chosen]}
    (out / "live_ab.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0
