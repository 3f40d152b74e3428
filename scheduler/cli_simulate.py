"""``edgeserving simulate``: one policy on one workload, through the discrete-event simulator."""

from __future__ import annotations

import argparse
import json

HELP = "simulate one policy on a trace or a Poisson workload (fast, no GPU)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from scheduler.paths import seed_profile_path
    from scheduler.policies import DEFAULT_POLICY, policy_names

    p.add_argument("--profile", default=str(seed_profile_path()),
                   help="profile JSON (default: the shared seed profile)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", help="trace CSV (arrival_s,model,deadline_ms,...)")
    src.add_argument("--poisson", metavar="SPEC",
                     help="per-model Poisson rates and one deadline, e.g. resnet50=120,resnet101=80,resnet152=40@50ms")
    p.add_argument("--seconds", type=float, default=60.0, help="length of a --poisson workload (default 60)")
    p.add_argument("--policy", default=DEFAULT_POLICY,
                   help=f"one of {', '.join(policy_names())} (default {DEFAULT_POLICY})")
    add_policy_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed for arrivals and slot-time draws (default 0)")
    p.add_argument("--noise", type=float, default=1.0, help="scale of the profiled slot-time spread (default 1)")
    p.add_argument("--json", action="store_true", help="print the summary JSON instead of a table")
    p.add_argument("--results", metavar="OUT.csv", help="write one row per request")


def add_policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bmax", type=int, default=10, help="largest batch a slot may run (default 10)")
    p.add_argument("--quantile", default="p95", help="profile quantile policies plan with (default p95)")
    p.add_argument("--queue-bound", type=int, default=None, help="per-model queue bound (default none)")
    p.add_argument("--reject-infeasible", action="store_true",
                   help="refuse at admission requests no exit can serve in time")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scheduler.engine import AdmissionConfig
    from scheduler.policies import make_policy
    from scheduler.profile import Profile
    from scheduler.results import write_results
    from scheduler.simulator import simulate
    from scheduler.summary import exit_mix, summarize, summary_rows
    from workloads.poisson import PoissonSpec, poisson_rows
    from workloads.trace import read_trace

    profile = Profile.load(args.profile)
    policy = make_policy(args.policy, bmax=args.bmax, quantile=args.quantile)
    trace_seed, exec_seed = np.random.SeedSequence(args.seed).spawn(2)
    if args.trace:
        rows = read_trace(args.trace, models=profile.model_names)
        workload = args.trace
    else:
        spec = PoissonSpec.parse(args.poisson)
        for m in spec.rates_rps:
            profile.model(m)
        rows = poisson_rows(spec.rates_rps, spec.deadline_ms, args.seconds, np.random.default_rng(trace_seed))
        workload = f"poisson {args.poisson} for {args.seconds:g} s"
    requests = [r.to_request() for r in rows]
    if not requests:
        raise ValueError(f"the workload ({workload}) has no requests")
    admission = AdmissionConfig(queue_bound=args.queue_bound, reject_infeasible=args.reject_infeasible)
    results = simulate(requests, profile, policy, seed=exec_seed, noise=args.noise, admission=admission)
    if args.results:
        write_results(args.results, results)
    summary = summarize(results, profile, policy.label)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from scheduler.console import print_table, say

    header, table_rows = summary_rows([summary])
    print_table(f"simulate: {workload} on {profile.name}", header, table_rows)
    say(f"exits: {exit_mix(summary)}")
    if args.results:
        say(f"results: {args.results}")
    return 0
