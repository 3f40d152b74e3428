"""``edgeserving trace``: generate synthetic traces, convert public ones, describe a trace file."""

from __future__ import annotations

import argparse
import json

HELP = "generate (gen), convert public traces (convert) or describe (stats) a trace CSV"

_DEADLINES_HELP = "deadline classes MS:P[,MS:P...] summing to 1, or one fixed MS (default 50)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION", required=True)

    g = sub.add_parser("gen", help="generate a trace from a seeded arrival process",
                       description="Generate a trace: per-model arrivals from a seeded process, merged and sorted.")
    g.add_argument("--process", default="poisson", choices=("poisson", "gamma", "mmpp", "diurnal"),
                   help="arrival process (default poisson)")
    rates = g.add_mutually_exclusive_group(required=True)
    rates.add_argument("--rates", metavar="M=R[,M=R...]", help="per-model mean rates, requests/s")
    rates.add_argument("--rate", type=float, metavar="R", help="total mean rate, requests/s, split by --ratio")
    g.add_argument("--ratio", metavar="M:W[,M:W...]",
                   help="how --rate splits over models, e.g. resnet50:3,resnet101:2,resnet152:1")
    g.add_argument("--deadlines", default="50", metavar="MS:P[,MS:P...]", help=_DEADLINES_HELP)
    g.add_argument("--seconds", type=float, required=True, help="trace length in seconds")
    g.add_argument("--seed", type=int, default=0, help="seed of the numpy Generator (default 0)")
    g.add_argument("--cv", type=float, help="gamma: inter-arrival coefficient of variation (default 2)")
    g.add_argument("--burst-factor", type=float,
                   help="mmpp: on-period rate / mean rate (default 3); the long-run mean stays the given rate")
    g.add_argument("--on-fraction", type=float, help="mmpp: long-run share of time in bursts (default 0.25)")
    g.add_argument("--mean-on-s", type=float, help="mmpp: mean burst length in seconds (default 1)")
    g.add_argument("--period-s", type=float, help="diurnal: period of the sinusoid (default: --seconds)")
    g.add_argument("--amplitude", type=float, help="diurnal: relative amplitude in [0, 1] (default 0.5)")
    g.add_argument("--profile", help="check the model names against this profile JSON")
    _common(g)

    c = sub.add_parser("convert", help="convert a public trace (Azure LLM 2023, Azure Functions 2019)",
                       description="Convert a public trace to edgeserving's trace CSV. --start and --seconds "
                                   "cut a window on the source trace's time axis (seconds since its first "
                                   "record), before --speedup or --rate rescale time.")
    c.add_argument("input", metavar="INPUT", help="the public trace CSV")
    c.add_argument("--format", required=True, choices=("azure-llm", "azure-functions"), help="the input's format")
    c.add_argument("--models", required=True, metavar="M[:W][,M[:W]...]",
                   help="models to map requests to, in order; azure-llm: shortest prompts to the first "
                        "(weights set bucket shares); azure-functions: busiest function to the first")
    c.add_argument("--deadlines", default="50", metavar="MS:P[,MS:P...]", help=_DEADLINES_HELP)
    c.add_argument("--rate", type=float, help="target mean rate of the output, requests/s (rescales time)")
    c.add_argument("--speedup", type=float, help="divide every time by this factor (same shape, higher rate)")
    c.add_argument("--start", type=float, default=0.0, help="window start, source seconds (default 0)")
    c.add_argument("--seconds", type=float, help="window length, source seconds (default: to the end)")
    c.add_argument("--assign", default="context", choices=("context", "random"),
                   help="azure-llm: model by context-length bucket (default) or seeded random draw")
    c.add_argument("--seed", type=int, default=0, help="seed of the numpy Generator (default 0)")
    _common(c)

    s = sub.add_parser("stats", help="describe a trace CSV: rates, CVs, deadline classes",
                       description="Validate a trace CSV and print its per-model rates and burstiness.")
    s.add_argument("trace", metavar="TRACE")
    s.add_argument("--json", action="store_true", help="print the statistics as JSON")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="FILE", help="the trace CSV to write")
    p.add_argument("--json", action="store_true", help="print the written trace's statistics as JSON")


def run(args: argparse.Namespace) -> int:
    from workloads.trace import read_trace

    if args.trace_command == "gen":
        rows, duration_s, what = _gen(args)
    elif args.trace_command == "convert":
        rows, duration_s, what = _convert(args)
    else:
        rows = read_trace(args.trace)
        duration_s, what = None, args.trace
    if args.trace_command != "stats":
        from workloads.trace import write_trace

        if not rows:
            raise ValueError(f"{what}: no requests (raise the rate or widen the window)")
        write_trace(args.out, rows)
    _report(rows, duration_s, what, args)
    return 0


def _gen(args: argparse.Namespace):
    import numpy as np

    from workloads.generators import generate
    from workloads.mix import DeadlineMix, parse_weights, split_rate
    from workloads.poisson import parse_rates

    if args.rates is not None:
        if args.ratio is not None:
            raise ValueError("--ratio splits a total --rate; with per-model --rates leave it out")
        rates = parse_rates(args.rates)
    else:
        if args.ratio is None:
            raise ValueError("--rate needs --ratio M:W[,M:W...] to split it over models (or use --rates M=R,...)")
        rates = split_rate(args.rate, parse_weights(args.ratio, "--ratio"))
    if args.profile:
        from scheduler.profile import Profile

        profile = Profile.load(args.profile)
        for m in rates:
            profile.model(m)
    rows = generate(args.process, rates, DeadlineMix.parse(args.deadlines), args.seconds,
                    np.random.default_rng(args.seed), cv=args.cv, burst_factor=args.burst_factor,
                    on_fraction=args.on_fraction, mean_on_s=args.mean_on_s, period_s=args.period_s,
                    amplitude=args.amplitude)
    return rows, args.seconds, f"{args.process} trace, {args.seconds:g} s, seed {args.seed}"


def _convert(args: argparse.Namespace):
    import numpy as np

    from scheduler.console import say
    from workloads.azure import busiest_functions, convert_azure_llm
    from workloads.azure_functions import functions_to_rows
    from workloads.mix import DeadlineMix, parse_weights

    weights = parse_weights(args.models, "--models")
    mix = DeadlineMix.parse(args.deadlines)
    rng = np.random.default_rng(args.seed)
    speedup = 1.0 if args.speedup is None else args.speedup
    if args.speedup is not None and args.rate is not None:
        raise ValueError("give --speedup or --rate, not both (both rescale time)")
    if args.format == "azure-llm":
        rows = convert_azure_llm(args.input, weights, mix, rng, rate_rps=args.rate, speedup=speedup,
                                 start_s=args.start, seconds=args.seconds, assign=args.assign)
    else:
        if any(w != 1.0 for w in weights.values()):
            raise ValueError("--models weights apply to azure-llm only: azure-functions rates come from the "
                             "functions' own counts")
        if args.assign != "context":
            raise ValueError("--assign applies to azure-llm only: azure-functions maps the busiest functions")
        models = list(weights)
        funcs, trace_s = busiest_functions(args.input, len(models), args.start, args.seconds)
        if not args.json:
            for model, f in zip(models, funcs):
                say(f"{model} <- function {f.describe()}")
        rows = functions_to_rows(funcs, models, mix, rng, trace_s, rate_rps=args.rate, speedup=speedup,
                                 start_s=args.start, seconds=args.seconds)
    return rows, None, f"{args.format} {args.input}"


def _report(rows, duration_s: float | None, what: str, args: argparse.Namespace) -> None:
    from scheduler.console import print_table, say
    from workloads.stats import stats_table, trace_stats

    stats = trace_stats(rows, duration_s)
    if args.json:
        print(json.dumps(stats, indent=2))
        return
    header, table = stats_table(stats)
    say(f"{what}: {stats['requests']} requests over {stats['duration_s']:.1f} s")
    print_table("", header, table)
    shares = ", ".join(f"{d} ms: {100 * s:.1f}%" for d, s in stats["deadline_share"].items())
    say(f"deadlines: {shares}")
    if args.trace_command != "stats":
        say(f"wrote {args.out}")
