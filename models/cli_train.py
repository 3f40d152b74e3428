"""``edgeserving train``: train zoo models on bundled data and write checkpoints plus an accuracy table."""

from __future__ import annotations

import argparse
import json

HELP = "train early-exit models of the zoo on bundled real data; writes checkpoints and a per-exit accuracy table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None,
                   help="comma-separated zoo names, 'demo' (default: the three demo models) or 'all' (every "
                        "trainable model)")
    p.add_argument("--out", default=None,
                   help="checkpoint folder (default: the cache, ~/.cache/edgeserving/zoo or $EDGESERVING_CACHE/zoo; "
                        "models/zoo_artifacts regenerates the committed demo zoo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for every model (default: each model's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, initialisation and shuffling")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None,
                   help="self-distillation from the final exit to the earlier ones (default: each model's recipe)")
    p.add_argument("--target-accuracy", type=float, default=None,
                   help="accuracy the confidence-exit thresholds are calibrated for on the validation split "
                        "(default: the final exit's validation accuracy minus 0.01)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads while training (default 1: on a busy machine extra threads spin and slow "
                        "training down; 2 is faster on an idle 2-core machine)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from models.build_zoo import train_spec
    from models.zoo import cache_dir, parse_models, spec
    from scheduler.console import print_table, progress, status

    names = parse_models(args.models)
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.target_accuracy is not None and not 0.0 < args.target_accuracy <= 1.0:
        raise ValueError(f"--target-accuracy must be in (0, 1], got {args.target_accuracy}")
    out = args.out or cache_dir()
    report = {}
    rows = []
    with progress() as bar:
        for name in names:
            s = spec(name)
            if s.dataset is None:
                raise ValueError(f"model {name!r} has no bundled dataset (profile it with --random-weights); "
                                 f"trainable models: {parse_models('all')}")
            epochs = args.epochs or s.train.get("epochs", 20)
            task = bar.add_task(f"train {name}", total=epochs)
            status(f"training {name} ({s.family} on {s.dataset}, {epochs} epochs)")
            path, meta, result = train_spec(s, out, args.seed, args.epochs, args.distill, args.threads,
                                            on_epoch=lambda _e, _loss, task=task: bar.advance(task),
                                            target_accuracy=args.target_accuracy)
            report[name] = {"checkpoint": str(path), "dataset": meta.dataset, "exits": list(meta.exits),
                            "val_accuracy": meta.val_accuracy, "test_accuracy": meta.accuracy,
                            "thresholds": meta.thresholds, "target_accuracy": meta.target_accuracy,
                            "params": meta.extra["params"], "train_s": round(result.train_s, 2)}
            for e in meta.exits:
                thr = meta.thresholds.get("max_softmax", {}).get(e)
                rows.append([name, e, f"{meta.val_accuracy[e]:.4f}", f"{meta.accuracy[e]:.4f}",
                             "-" if thr is None else f"{thr:.4f}"])
            status(f"{name}: {result.train_s:.1f} s, checkpoint {path}")
    if args.json:
        print(json.dumps({"seed": args.seed, "out": str(out), "models": report}, indent=1))
    else:
        print_table(f"per-exit accuracy (seed {args.seed}; validation and held-out test splits)",
                    ["model", "exit", "val acc", "test acc", "max-softmax threshold"], rows)
    return 0
