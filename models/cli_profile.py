"""``edgeserving profile``: measure slot latency per (model, exit, batch) and write the profile JSON."""

from __future__ import annotations

import argparse
import json

HELP = "measure every (model, exit, batch) with the torch executor and write the profile JSON"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None,
                   help="comma-separated zoo names or 'demo' (default: the demo zoo); the seed layouts "
                        "resnet50,resnet101,resnet152 need --random-weights")
    p.add_argument("--checkpoints", default=None,
                   help="checkpoint folder (default: models/zoo_artifacts if it holds the models, else the cache)")
    p.add_argument("--random-weights", action="store_true",
                   help="time freshly initialised networks instead of checkpoints (accuracy: the seed profile's "
                        "where it has the model, else chance)")
    p.add_argument("--input-size", type=int, default=None,
                   help="height and width of image models' inputs (with --random-weights)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda when present)")
    p.add_argument("--batch-sizes", default="1-10", help="e.g. 1-10 (default), 1,2,4,8 or 1-4,8")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per (model, exit, batch) (default 5)")
    p.add_argument("--repeats", type=int, default=40, help="timed runs per (model, exit, batch) (default 40)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads while measuring; use what the live worker pins (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (and random weights)")
    p.add_argument("--name", default=None, help="the profile's name (default: derived from models and device)")
    p.add_argument("--out", default=None, help="profile JSON to write (default artifacts/profiles/NAME.json)")
    p.add_argument("--compare", default="auto",
                   help="profile to compare exit latency ratios with: a path, 'seed', 'none', or 'auto' "
                        "(the seed profile when it has any of the models)")
    p.add_argument("--json", action="store_true", help="print the profile JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.build_zoo import model_for_profile, profile_models, write_profile
    from models.device import pick_device
    from models.profile_report import batch_scaling_rows, compare_rows, load_reference, summary_rows
    from models.profiler import parse_batch_sizes
    from models.zoo import DEMO_MODELS, default_checkpoint_dir, parse_models
    from scheduler.console import print_table, progress, say, status

    names = parse_models(args.models, DEMO_MODELS)
    batch_sizes = parse_batch_sizes(args.batch_sizes)
    for flag in ("warmup", "threads"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            raise ValueError(f"--{flag} must be >= {0 if flag == 'warmup' else 1}, got {getattr(args, flag)}")
    if args.repeats < 2:
        raise ValueError(f"--repeats must be >= 2 to give quantiles, got {args.repeats}")
    device = pick_device(args.device)
    reference = load_reference(args.compare, names)
    checkpoints = None if args.random_weights else (args.checkpoints or default_checkpoint_dir(names))
    # Random weights have no accuracy of their own: take the seed profile's published figures where it has the model.
    seed = load_reference("auto", names) if args.random_weights else None
    seed_acc = {m: seed.models[m].accuracy for m in seed.models} if seed is not None else None
    models = {n: model_for_profile(n, checkpoints, args.random_weights, args.seed, args.input_size, seed_acc)
              for n in names}
    name = args.name or f"{'-'.join(names)}-{device.type}"
    runs = sum(len(m.exits) for m, _ in models.values()) * len(batch_sizes) * (args.warmup + args.repeats)
    status(f"profiling {', '.join(names)} on {device} with {args.threads} thread(s): {len(batch_sizes)} batch "
           f"sizes, {args.warmup} warm-up + {args.repeats} timed runs each ({runs} slots)")
    with progress() as bar:
        task = bar.add_task("profile", total=runs)
        data = profile_models(models, device, batch_sizes, args.warmup, args.repeats, args.threads, name,
                              args.seed, tick=lambda: bar.advance(task))
    out = Path(args.out) if args.out else Path("artifacts") / "profiles" / f"{name}.json"
    write_profile(data, out)
    status(f"wrote {out}")
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    say(f"device: {data['device']}; torch {data['torch_version']}; {args.threads} thread(s)")
    header, rows = summary_rows(data)
    print_table(f"slot latency in ms (mean / p95) per exit and batch; {name}", header, rows)
    if reference is not None:
        header, rows = compare_rows(data, reference)
        if rows:
            print_table(f"exit latency as a share of the final exit's (p50): this run ('here') vs {reference.name} "
                        f"('ref')",
                        header, rows)
            header, rows = batch_scaling_rows(data, reference)
            if rows:
                print_table(f"batching: final-exit latency at batch b over batch 1 (p50): here vs "
                            f"{reference.name}", header, rows)
    return 0
