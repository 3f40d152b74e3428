"""PNG plots for ``bench sim``: violation ratio, P95 and effective accuracy against load, and exit mixes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.sim_report import Point


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def suite_plots(points: Sequence[Point], out_dir: Path) -> list[Path]:
    """Per suite one PNG with three panels against load; one line per (policy, deadline mix)."""
    plt = _pyplot()
    by_suite: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        by_suite[p.suite].append(p)
    written = []
    for suite, pts in by_suite.items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        lines: dict[tuple[str, str], list[Point]] = defaultdict(list)
        for p in pts:
            lines[(p.policy, p.slo)].append(p)
        for (policy, slo), ps in sorted(lines.items()):
            ps.sort(key=lambda p: p.load)
            x = [p.load for p in ps]
            label = f"{policy} ({slo})"
            axes[0].plot(x, [100 * p.violation_ratio for p in ps], marker="o", label=label)
            axes[1].plot(x, [p.p95_ms if p.p95_ms is not None else float("nan") for p in ps], marker="o",
                         label=label)
            axes[2].plot(x, [100 * p.effective_accuracy for p in ps], marker="o", label=label)
        xlabel = "load (fraction of capacity)" if suite == "azure-llm" else "λ (requests/s per weight unit)"
        for ax, title in zip(axes, ("SLO violation %", "P95 latency ms", "effective accuracy %")):
            ax.set_title(f"{suite}: {title}")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
        axes[0].set_yscale("symlog", linthresh=0.1)
        axes[2].legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = out_dir / f"{suite}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def exit_mix_plot(mix: Mapping[str, Mapping[str, Mapping[str, int]]], exit_order: Mapping[str, Sequence[str]],
                  path: Path) -> Path:
    """Stacked bars: share of completed requests per exit, one bar per (policy, model)."""
    plt = _pyplot()
    labels, shares = [], []
    depth = max(len(v) for v in exit_order.values())
    for policy, per_model in mix.items():
        for model, exits in exit_order.items():
            counts = per_model.get(model, {})
            total = sum(counts.values())
            labels.append(f"{policy}\n{model}")
            row = [100 * counts.get(e, 0) / total if total else 0.0 for e in exits]
            shares.append(row + [0.0] * (depth - len(exits)))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels)), 4.5))
    bottom = [0.0] * len(labels)
    for level in range(depth):
        vals = [s[level] for s in shares]
        names = {exits[level] for exits in exit_order.values() if level < len(exits)}
        ax.bar(range(len(labels)), vals, bottom=bottom, label=" / ".join(sorted(names)))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("% of completed requests")
    ax.set_title("exit mix per policy and model (all runs)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
