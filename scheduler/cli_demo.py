"""``edgeserving demo``: the main job on an embedded default.

For now it runs the seed workload through the simulator and prints the policy comparison.
"""

from __future__ import annotations

import argparse

HELP = "run the embedded demo: every policy on the seed workload, side by side"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per run (default 30)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scheduler.console import print_table, say, status
    from scheduler.paths import require, seed_profile_path
    from scheduler.policies import make_policy, policy_names
    from scheduler.profile import Profile
    from scheduler.simulator import simulate
    from scheduler.summary import summarize, summary_rows
    from workloads.poisson import poisson_rows

    profile = Profile.load(require(seed_profile_path(), "the seed profile"))
    for lam, slo_ms in ((120, 50.0), (240, 50.0), (120, 20.0)):
        rates = {m: lam * w for m, w in zip(profile.model_names, (3, 2, 1))}
        trace_seed, exec_seed = np.random.SeedSequence(args.seed).spawn(2)
        rows = poisson_rows(rates, slo_ms, args.seconds, np.random.default_rng(trace_seed))
        requests = [r.to_request() for r in rows]
        status(f"simulating {len(requests)} requests (lambda={lam}, SLO {slo_ms:g} ms) "
               f"with {len(policy_names())} policies")
        summaries = [summarize(simulate(requests, profile, make_policy(name), seed=exec_seed), profile, name)
                     for name in policy_names()]
        header, rows = summary_rows(summaries)
        print_table(f"seed workload, Poisson 3:2:1, lambda={lam}, SLO {slo_ms:g} ms, {args.seconds:g} s",
                    header, rows)
    say("simulated on the profile's latencies; `edgeserving simulate --help` runs your own workload")
    return 0
