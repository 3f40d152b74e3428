"""``edgeserving submit``: send one request to a running server and print the answer."""

from __future__ import annotations

import argparse
import json

HELP = "send one inference request to a running edgeserving server and print the answer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a served model (GET /v1/models lists them)")
    p.add_argument("--deadline-ms", type=float, default=None, help="relative deadline (default: the model's)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="FILE.npy",
                     help="one sample saved with numpy.save, shaped like the model's input")
    src.add_argument("--random", action="store_true", help="a random sample of the model's input shape")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server URL (default http://127.0.0.1:8000)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="HTTP timeout (default 30 s)")
    p.add_argument("--json", action="store_true", help="print the response body as JSON")


def run(args: argparse.Namespace) -> int:
    """Exit status 0 when the request completed (MET or LATE), 1 otherwise."""
    import numpy as np

    from scheduler.client import ClientError, EdgeClient
    from scheduler.console import print_table, say

    with EdgeClient(args.url, timeout_s=args.timeout_s) as client:
        try:
            if args.input:
                sample = np.load(args.input, allow_pickle=False)
            else:
                shape = _input_shape(client.models(), args.model)
                sample = np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32)
            result = client.infer(args.model, sample, deadline_ms=args.deadline_ms)
        except ClientError as exc:
            raise OSError(str(exc)) from None
    if args.json:
        print(json.dumps(result.body, indent=2))
        return 0 if result.completed else 1
    rows = [[k, "-" if v is None else str(v)] for k, v in result.body.items()]
    rows.append(["worker", result.worker or "-"])
    print_table(f"{args.model}: HTTP {result.status}", ["field", "value"], rows)
    if not result.completed:
        say(f"not completed: {result.outcome} ({result.reason}){': ' + result.error if result.error else ''}")
    return 0 if result.completed else 1


def _input_shape(models: list[dict], name: str) -> list[int]:
    for m in models:
        if m["name"] == name:
            return m["input_shape"]
    raise ValueError(f"unknown model {name!r}; the server serves {[m['name'] for m in models]}")
