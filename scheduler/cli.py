"""The ``edgeserving`` command line: one subcommand per module, imported lazily.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Command modules keep heavy imports (torch, ray) inside ``run`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> module; the order is the order ``edgeserving --help`` lists them in.
COMMANDS = {
    "demo": "scheduler.cli_demo",
    "simulate": "scheduler.cli_simulate",
    "bench": "bench.cli",
    "train": "models.cli_train",
    "profile": "models.cli_profile",
    "trace": "workloads.cli_trace",
    "replay": "workloads.cli_replay",
    "serve": "scheduler.cli_serve",
    "submit": "scheduler.cli_submit",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeserving",
        description="Deadline-aware serving of early-exit DNNs: simulate, serve, replay and benchmark.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # bad input: one clear line, no traceback
        print(f"edgeserving {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
