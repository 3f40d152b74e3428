"""``edgeserving bench SUITE``: each suite is a module with HELP, add_arguments and run."""

from __future__ import annotations

import argparse
import importlib

HELP = "run a benchmark suite (overhead, ...)"

SUITES = {
    "overhead": "bench.overhead",
    "sim": "bench.sim",
    "serve-overhead": "bench.serve_overhead",
    "live": "bench.live",
    "live-ab": "bench.live_ab",
    "fidelity": "bench.fidelity",
    "soak": "bench.soak",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, module_name in SUITES.items():
        module = importlib.import_module(module_name)
        s = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(s)
        s.set_defaults(_suite_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._suite_run(args) or 0)
