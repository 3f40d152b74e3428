"""``edgeserving replay``: an open-loop replay of a trace, live over HTTP or in the simulator."""

from __future__ import annotations

import argparse
import json

HELP = "replay a trace open-loop against a live server (default http://127.0.0.1:8000) or the simulator"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scheduler.cli_simulate import add_policy_options
    from scheduler.paths import seed_profile_path
    from scheduler.policies import DEFAULT_POLICY, policy_names
    from workloads.replay import DEFAULT_BEHIND_MS, DEFAULT_GRACE_MS, DEFAULT_URL

    p.add_argument("trace", metavar="TRACE", help="trace CSV (arrival_s,model,deadline_ms,...)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--url", default=DEFAULT_URL, help=f"server to replay against (default {DEFAULT_URL})")
    target.add_argument("--simulate", action="store_true", help="run the trace through the simulator instead")
    p.add_argument("--results", metavar="OUT.csv", help="write one row per request (the results CSV)")
    p.add_argument("--json", action="store_true", help="print the summary JSON instead of a table")
    p.add_argument("--max-requests", type=int, metavar="N", help="replay at most the first N requests")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="replay only requests scheduled in the first S seconds of the trace")
    live = p.add_argument_group("live replay")
    live.add_argument("--grace-ms", type=float, default=DEFAULT_GRACE_MS,
                      help=f"client timeout beyond each request's deadline (default {DEFAULT_GRACE_MS:g})")
    live.add_argument("--judge", choices=("server", "client"), default="server",
                      help="MET/LATE as the server reports it (default) or by client-side latency")
    live.add_argument("--propagate-deadlines", action="store_true",
                      help="send each request's send time (header X-Request-Sent-At) so the server counts its "
                           "deadline from the send, not from its receipt; client and server must share a clock")
    live.add_argument("--samples-per-call", type=int, default=1, metavar="N",
                      help="send each row as one Open Inference Protocol call of N samples, each one request in the "
                           "results (default 1: one /v1 request per row)")
    live.add_argument("--label", help="policy name for the summary (default: as the server reports it)")
    live.add_argument("--behind-ms", type=float, default=DEFAULT_BEHIND_MS,
                      help=f"p99 send lag above which the replay says it fell behind (default {DEFAULT_BEHIND_MS:g})")
    sim = p.add_argument_group("simulated replay (--simulate)")
    sim.add_argument("--profile", default=str(seed_profile_path()), help="profile JSON (default: the seed profile)")
    sim.add_argument("--policy", default=DEFAULT_POLICY,
                     help=f"one of {', '.join(policy_names())} (default {DEFAULT_POLICY})")
    sim.add_argument("--seed", type=int, default=0, help="seed of the slot-time draws (default 0)")
    sim.add_argument("--noise", type=float, default=1.0, help="scale of the profiled slot-time spread (default 1)")
    add_policy_options(sim)


def run(args: argparse.Namespace) -> int:
    from workloads.replay import replay_http, replay_simulated
    from workloads.trace import read_trace

    if args.simulate:
        from scheduler.engine import AdmissionConfig
        from scheduler.policies import make_policy
        from scheduler.profile import Profile

        profile = Profile.load(args.profile)
        rows = read_trace(args.trace, models=profile.model_names)
        policy = make_policy(args.policy, bmax=args.bmax, quantile=args.quantile)
        admission = AdmissionConfig(queue_bound=args.queue_bound, reject_infeasible=args.reject_infeasible)
        report = replay_simulated(rows, profile, policy, seed=args.seed, noise=args.noise, admission=admission,
                                  max_requests=args.max_requests, max_seconds=args.max_seconds)
    else:
        rows = read_trace(args.trace)
        with _Progress() as progress:
            report = replay_http(
                rows, args.url, grace_ms=args.grace_ms, max_requests=args.max_requests,
                max_seconds=args.max_seconds, judge=args.judge, label=args.label, behind_ms=args.behind_ms,
                propagate_deadlines=args.propagate_deadlines, samples_per_call=args.samples_per_call,
                on_progress=progress.start_for(rows, args.max_requests, args.max_seconds))
    if args.results:
        report.write_results(args.results)
    _print(report, args)
    return 0


def _print(report, args: argparse.Namespace) -> None:
    from scheduler.console import err, print_table, say
    from scheduler.summary import exit_mix, summary_rows

    if report.lag is not None and report.lag.fell_behind:
        err.print(f"[bold yellow]warning:[/] the replayer {report.lag.describe()}", markup=True)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return
    summary = report.summary()
    header, rows = summary_rows([summary])
    cut = "" if len(report.results) == report.trace_rows else f" (of {report.trace_rows} in the trace)"
    print_table(f"replay {args.trace} -> {report.target}: {len(report.results)} requests{cut}", header, rows)
    say(f"exits: {exit_mix(summary)}")
    if report.mode == "live":
        say(f"wall time {report.wall_s:.1f} s, peak in flight {report.peak_in_flight}; {report.lag.describe()}")
        if report.client_late:
            say(f"{report.client_late} request(s) the server judged MET took longer than their deadline "
                f"client-side (--judge client counts them LATE)")
    if args.results:
        say(f"results: {args.results}")


class _Progress:
    """A rich progress bar fed by the replayer's (sent, done) callback."""

    def __init__(self) -> None:
        from scheduler.console import progress

        self.bar = progress()
        self.task = None

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start_for(self, rows, max_requests: int | None, max_seconds: float | None):
        from workloads.replay import bound_rows

        self.task = self.bar.add_task("replay", total=len(bound_rows(rows, max_requests, max_seconds)))
        return self.update

    def update(self, sent: int, done: int) -> None:
        self.bar.update(self.task, completed=done, description=f"replay: sent {sent}, answered {done}")
