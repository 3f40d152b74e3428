"""Aggregating ``bench sim`` runs over seeds, checking the issue-7 targets, writing the markdown report.

A *point* is one workload (suite, load, deadline mix, noise) and one policy; its figures pool the
seeds: violation ratio = all non-MET outcomes / all requests, accuracies weighted by requests,
P95 = the mean of the seeds' P95s (percentiles do not pool).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# issue 7's numeric targets (simulated): the reference policy is compared side by side with ours.
SEED_VIOLATION_FACTOR = 0.1  # target 1: ours <= 0.1 x reference where the reference is >= 0.1%
SEED_VIOLATION_FLOOR = 0.001
HARD_VIOLATION_FACTOR = 0.25  # target 2: ours <= 0.25 x reference
HARD_ACCURACY_SLACK = 0.005  # target 2: effective accuracy >= reference - 0.5 point

POINT_KEYS = ("suite", "process", "load", "slo", "noise")


@dataclass(slots=True)
class Point:
    suite: str
    process: str
    load: float
    slo: str
    noise: float
    policy: str
    target: int | None
    seeds: int = 0
    requests: int = 0
    violations: int = 0
    completed: int = 0
    accuracy_sum: float = 0.0
    p95s: list[float] = field(default_factory=list)
    seed_violations: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def violation_ratio(self) -> float:
        return self.violations / self.requests if self.requests else 0.0

    @property
    def mean_accuracy(self) -> float | None:
        return self.accuracy_sum / self.completed if self.completed else None

    @property
    def effective_accuracy(self) -> float:
        return self.accuracy_sum / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float | None:
        return sum(self.p95s) / len(self.p95s) if self.p95s else None

    def key(self) -> tuple:
        return (self.suite, self.process, self.load, self.slo, self.noise)


def aggregate(rows: Iterable[dict]) -> list[Point]:
    """Pool the seeds of each (workload, policy)."""
    points: dict[tuple, Point] = {}
    for r in rows:
        k = (*(r[x] for x in POINT_KEYS), r["policy"])
        p = points.get(k)
        if p is None:
            p = points[k] = Point(r["suite"], r["process"], r["load"], r["slo"], r["noise"], r["policy"],
                                  r["target"])
        p.seeds += 1
        p.requests += r["requests"]
        p.violations += r["requests"] - r["MET"]
        done = r["MET"] + r["LATE"]
        p.completed += done
        p.accuracy_sum += (r["mean_accuracy"] or 0.0) * done
        if r["p95_ms"] is not None:
            p.p95s.append(r["p95_ms"])
        p.seed_violations.append(r["violation_ratio"])
        for o in ("MET", "LATE", "REJECTED", "DROPPED", "FAILED"):
            p.outcomes[o] += r[o]
    return sorted(points.values(), key=lambda p: (p.suite, p.slo, p.load, p.policy))


@dataclass(frozen=True, slots=True)
class Verdict:
    suite: str
    target: int
    load: float
    slo: str
    ref: Point
    ours: Point
    holds: bool
    rule: str


def check_targets(points: Sequence[Point], reference: str, ours: str) -> list[Verdict]:
    """One verdict per workload point that carries a target and has both policies."""
    by_key: dict[tuple, dict[str, Point]] = defaultdict(dict)
    for p in points:
        by_key[p.key()][p.policy] = p
    out = []
    for pair in by_key.values():
        ref, us = pair.get(reference), pair.get(ours)
        if ref is None or us is None or ref.target is None:
            continue
        holds, rule = _rule(ref.target, ref, us)
        out.append(Verdict(ref.suite, ref.target, ref.load, ref.slo, ref, us, holds, rule))
    return sorted(out, key=lambda v: (v.target, v.suite, v.slo, v.load))


def _rule(target: int, ref: Point, us: Point) -> tuple[bool, str]:
    rv, uv = ref.violation_ratio, us.violation_ratio
    if target == 1:
        if rv == 0:
            v_ok, v_rule = uv == 0, "viol = 0 (ref 0)"
        elif rv >= SEED_VIOLATION_FLOOR:
            v_ok, v_rule = uv <= SEED_VIOLATION_FACTOR * rv, "viol <= 0.1x ref"
        else:
            v_ok, v_rule = True, "viol: none (ref < 0.1%)"
        ra, ua = ref.mean_accuracy or 0.0, us.mean_accuracy or 0.0
        return v_ok and ua >= ra, v_rule + "; mean acc >= ref"
    if target == 2:
        v_ok = uv == 0 if rv == 0 else uv <= HARD_VIOLATION_FACTOR * rv
        a_ok = us.effective_accuracy >= ref.effective_accuracy - HARD_ACCURACY_SLACK
        return v_ok and a_ok, "viol <= 0.25x ref; eff acc >= ref - 0.5 pt"
    if target == 3:
        return uv <= rv and us.effective_accuracy > ref.effective_accuracy, "viol <= ref; eff acc > ref"
    raise ValueError(f"unknown target {target}")


def _pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def load_label(p: Point | Verdict) -> str:
    return f"{p.load:g}x cap" if getattr(p, "suite", "") == "azure-llm" else f"λ={p.load:g}"


def points_table(points: Sequence[Point]) -> tuple[list[str], list[list[str]]]:
    header = ["suite", "load", "deadlines", "policy", "seeds", "requests", "violation %", "per-seed viol %",
              "P95 ms", "mean acc %", "eff acc %", "dropped+rejected"]
    rows = [[p.suite, load_label(p), p.slo, p.policy, str(p.seeds), str(p.requests), _pct(p.violation_ratio, 3),
             " ".join(_pct(v, 3) for v in p.seed_violations), _ms(p.p95_ms), _pct(p.mean_accuracy),
             _pct(p.effective_accuracy), str(p.outcomes["DROPPED"] + p.outcomes["REJECTED"])] for p in points]
    return header, rows


def verdict_table(verdicts: Sequence[Verdict]) -> tuple[list[str], list[list[str]]]:
    header = ["target", "suite", "load", "deadlines", "ref viol %", "ours viol %", "ref mean acc %",
              "ours mean acc %", "ref eff acc %", "ours eff acc %", "rule", "holds"]
    rows = [[str(v.target), v.suite, load_label(v), v.slo, _pct(v.ref.violation_ratio, 3),
             _pct(v.ours.violation_ratio, 3), _pct(v.ref.mean_accuracy), _pct(v.ours.mean_accuracy),
             _pct(v.ref.effective_accuracy), _pct(v.ours.effective_accuracy), v.rule,
             "yes" if v.holds else "NO"] for v in verdicts]
    return header, rows


def suite_summary(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per suite: does its target hold at every point?"""
    by_suite: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_suite[v.suite].append(v)
    lines = []
    for suite, vs in by_suite.items():
        ok = sum(v.holds for v in vs)
        state = "HOLDS" if ok == len(vs) else "FAILS"
        lines.append(f"{suite}: target {vs[0].target} {state} at {ok}/{len(vs)} points")
    return lines


def ablation_table(points: Sequence[Point], full: str) -> tuple[list[str], list[list[str]]]:
    """Per workload point, each variant's violation and accuracy and the change against the full policy."""
    by_key: dict[tuple, dict[str, Point]] = defaultdict(dict)
    for p in points:
        by_key[p.key()][p.policy] = p
    header = ["suite", "load", "deadlines", "variant", "violation %", "Δ viol pt", "mean acc %", "eff acc %",
              "Δ eff acc pt", "P95 ms"]
    rows = []
    for pair in by_key.values():
        base = pair.get(full)
        for name, p in pair.items():
            dv = "-" if base is None else f"{100 * (p.violation_ratio - base.violation_ratio):+.3f}"
            da = "-" if base is None else f"{100 * (p.effective_accuracy - base.effective_accuracy):+.2f}"
            rows.append([p.suite, load_label(p), p.slo, name, _pct(p.violation_ratio, 3), dv, _pct(p.mean_accuracy),
                         _pct(p.effective_accuracy), da, _ms(p.p95_ms)])
    return header, rows


def date_machine_line() -> str:
    """The markdown reports' first bullet: when (UTC) and on what the benchmark ran."""
    import os
    import platform
    from datetime import datetime, timezone

    return (f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine: {platform.node()} "
            f"({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def exit_mix_rows(rows: Iterable[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """policy -> model -> exit -> requests, over every run of that policy."""
    mix: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for r in rows:
        for model, exits in r["exits"].items():
            for e, n in exits.items():
                mix[r["policy"]][model][e] += n
    return mix
