"""Tables for ``edgeserving profile``: a latency summary, and exit latency ratios against a reference
profile (the GPU-derived seed profile by default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.paths import require, seed_profile_path
from scheduler.profile import Profile


def load_reference(choice: str, models: Sequence[str]) -> Profile | None:
    """The profile to compare with: 'none', 'seed', 'auto' (the seed profile when it shares a model) or a path."""
    if choice == "none":
        return None
    if choice == "auto":
        path = seed_profile_path()
        if not path.exists():
            return None
        seed = Profile.load(path)
        return seed if any(m in seed.models for m in models) else None
    if choice == "seed":
        return Profile.load(require(seed_profile_path(), "the seed profile"))
    return Profile.load(choice)


def _columns(sizes: Sequence[int], limit: int = 5) -> list[int]:
    if len(sizes) <= limit:
        return list(sizes)
    picks = [s for s in (1, 2, 4, 8) if s in sizes]
    return sorted(set([sizes[0], *picks, sizes[-1]]))


def summary_rows(data: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows (model, exit, accuracy, mean/p95 at a few batch sizes) of a profile JSON object."""
    rows: list[list[str]] = []
    cols: list[int] = []
    for name, m in data["models"].items():
        sizes = sorted(int(b) for b in m["latency_ms"][m["exits"][0]])
        cols = _columns(sizes)
        for e in m["exits"]:
            lat = m["latency_ms"][e]
            rows.append([name, e, f"{m['accuracy'][e]:.4f}",
                         *(f"{lat[str(b)]['mean']:.2f} / {lat[str(b)]['p95']:.2f}" for b in cols)])
    return ["model", "exit", "accuracy", *(f"b={b}" for b in cols)], rows


def compare_rows(data: Mapping[str, Any], reference: Profile,
                 quantile: str = "p50") -> tuple[list[str], list[list[str]]]:
    """Per shared model and exit: its latency / the final exit's latency at ``quantile`` (the median by
    default: robust to other processes' bursts), here and in ``reference``, at up to four batch sizes
    both profiles measured; then each model's final exit relative to the first shared model's, which
    compares the depth of the networks."""
    shared = [m for m in data["models"] if m in reference.models]
    if not shared:
        return [], []
    ours = Profile.from_dict(data)
    sizes = sorted(set(ours.models[shared[0]].batch_sizes) & set(reference.models[shared[0]].batch_sizes))[:4]
    header = ["model", "exit", *(f"{tag} b={b}" for b in sizes for tag in ("here", "ref"))]
    rows = []
    for m in shared:
        exits = [e for e in ours.models[m].exits if e in reference.models[m].exits]
        if not exits:
            continue
        final = exits[-1]
        for e in exits[:-1]:
            cells = []
            for b in sizes:
                cells.append(_ratio(ours, m, e, m, final, b, quantile))
                cells.append(_ratio(reference, m, e, m, final, b, quantile))
            rows.append([m, f"{e} / {final}", *cells])
    base = shared[0]
    for m in shared[1:]:
        cells = []
        for b in sizes:
            cells.append(_ratio(ours, m, ours.models[m].exits[-1], base, ours.models[base].exits[-1], b, quantile))
            cells.append(_ratio(reference, m, reference.models[m].exits[-1], base,
                                reference.models[base].exits[-1], b, quantile))
        rows.append([m, f"final / {base} final", *cells])
    return header, rows


def _ratio(p: Profile, m1: str, e1: str, m2: str, e2: str, b: int, quantile: str, b2: int | None = None) -> str:
    """latency(m1, e1, b) / latency(m2, e2, b2 or b) at ``quantile``, formatted."""
    return f"{p.latency_ms(m1, e1, b, quantile) / p.latency_ms(m2, e2, b2 or b, quantile):.3f}"



def batch_scaling_rows(data: Mapping[str, Any], reference: Profile,
                       quantile: str = "p50") -> tuple[list[str], list[list[str]]]:
    """Per shared model: its final exit's latency at batch b / at batch 1, here and in ``reference``
    (how much batching buys on each device)."""
    ours = Profile.from_dict(data)
    shared = [m for m in ours.model_names if m in reference.models]
    if not shared:
        return [], []
    sizes = [b for b in sorted(set(ours.models[shared[0]].batch_sizes) & set(reference.models[shared[0]].batch_sizes))
             if b > 1][:4]
    if not sizes or 1 not in ours.models[shared[0]].batch_sizes:
        return [], []
    header = ["model", "final exit", *(f"{tag} b={b}" for b in sizes for tag in ("here", "ref"))]
    rows = []
    for m in shared:
        e_ours, e_ref = ours.models[m].exits[-1], reference.models[m].exits[-1]
        cells = []
        for b in sizes:
            cells.append(_ratio(ours, m, e_ours, m, e_ours, b, quantile, b2=1))
            cells.append(_ratio(reference, m, e_ref, m, e_ref, b, quantile, b2=1))
        rows.append([m, "batch b / batch 1", *cells])
    return header, rows
