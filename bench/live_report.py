"""Reports of live comparisons: the side-by-side table, the PNG (latency CDF and exit mix) and the targets.

Shared by ``edgeserving demo`` and ``edgeserving bench live``. Every figure is computed from the
replays' per-request results (``workloads.replay.ReplayReport``); nothing is typed in.

Targets, each judged on one trace replayed against every configuration in one run:

- issue 6: where plain Ray Serve violates at least 5% of the deadlines, the best policy's violation
  ratio is at most a quarter of plain's and its P95 at most half of plain's;
- issue 7 (live): the best policy's violation ratio and P95 are both below the reference policy's.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scheduler.summary import exit_mix

PLAIN_MIN_VIOLATION = 0.05  # issue 6 applies where plain Ray Serve misses at least this share of deadlines
PLAIN_VIOLATION_FACTOR = 0.25  # ... and then the best policy must stay at or below this share of plain's ratio
PLAIN_P95_FACTOR = 0.5  # ... and of plain's P95


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target on one run: whether it applies, whether it holds, and the numbers behind it."""

    target: str
    applies: bool
    met: bool
    detail: str

    def line(self) -> str:
        state = "MET" if self.met else ("NOT MET" if self.applies else "does not apply")
        return f"{self.target}: {state} ({self.detail})"

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "applies": self.applies, "met": self.met, "detail": self.detail}


def _p95(s: Mapping[str, Any]) -> float:
    return float("inf") if s["p95_ms"] is None else float(s["p95_ms"])


def plain_target(plain: Mapping[str, Any], best: Mapping[str, Any]) -> Verdict:
    """Issue 6's target from two summaries (``scheduler.summary.summarize``) of the same trace."""
    pv, bv = plain["violation_ratio"], best["violation_ratio"]
    pp, bp = _p95(plain), _p95(best)
    detail = (f"plain violates {100 * pv:.2f}%, P95 {pp:.1f} ms; {best['policy']} violates {100 * bv:.2f}% "
              f"(limit {100 * PLAIN_VIOLATION_FACTOR * pv:.2f}%), "
              f"P95 {bp:.1f} ms (limit {PLAIN_P95_FACTOR * pp:.1f} ms)")
    if pv < PLAIN_MIN_VIOLATION:
        low = f"plain violates only {100 * pv:.2f}% < {100 * PLAIN_MIN_VIOLATION:g}%: raise the load; "
        return Verdict("issue 6 (vs plain Ray Serve)", False, False, low + detail)
    met = bv <= PLAIN_VIOLATION_FACTOR * pv and bp <= PLAIN_P95_FACTOR * pp
    return Verdict("issue 6 (vs plain Ray Serve)", True, met, detail)


def reference_target(reference: Mapping[str, Any], best: Mapping[str, Any]) -> Verdict:
    """Issue 7's live target: the best policy's violation ratio and P95 both below the reference's."""
    rv, bv = reference["violation_ratio"], best["violation_ratio"]
    rp, bp = _p95(reference), _p95(best)
    met = bv < rv and bp < rp
    detail = (f"{reference['policy']} violates {100 * rv:.2f}%, P95 {rp:.1f} ms; "
              f"{best['policy']} violates {100 * bv:.2f}%, P95 {bp:.1f} ms")
    return Verdict("issue 7 (live, vs the reference policy)", True, met, detail)


def prediction_line(name: str, pred: Mapping[str, Any]) -> str:
    """The policy's own slot predictions against the measured slots (``bench.fidelity.prediction_error``)."""
    if not pred.get("slots"):
        return f"{name}: no slots in the worker's metrics"
    return (f"{name}: the policy's own slot predictions (worker metrics, {pred['slots']} slots): predicted mean "
            f"{pred['predicted_mean_ms']:.2f} ms, measured {pred['measured_mean_ms']:.2f} ms "
            f"(error {pred['mean_error_ms']:+.2f} ms per slot)")


def transit(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Propagated deadlines over a replay, from the worker's metrics: calls that carried their send time, the
    mean time from the client's send to the handler, and the requests refused because their deadline had
    passed by then (``edgeserving_request_transit_seconds``, reason ``deadline_expired``)."""
    from bench.live_harness import metric_delta
    from scheduler.serving.worker import DEADLINE_EXPIRED

    n = metric_delta(before, after, "edgeserving_request_transit_seconds_count")
    total_s = metric_delta(before, after, "edgeserving_request_transit_seconds_sum")
    return {"calls": int(n), "mean_ms": 1000.0 * total_s / n if n else 0.0,
            "expired": int(metric_delta(before, after, "edgeserving_requests_total", reason=DEADLINE_EXPIRED))}


def transit_line(name: str, t: Mapping[str, float]) -> str:
    if not t.get("calls"):
        return f"{name}: no call carried its send time (X-Request-Sent-At) in the worker's metrics"
    return (f"{name}: propagated deadlines: {t['calls']} calls, mean {t['mean_ms']:.2f} ms from the client's send "
            f"to the worker's handler, {t['expired']} refused as expired on arrival")


def segment_violations(results: Sequence[Any]) -> dict[str, float]:
    """Violation % per replay (segment or repeat) of a pooled report, by the ``k:`` prefix ``pooled`` gives ids."""
    counts: dict[str, list[int]] = {}
    for r in results:
        key = r.request.id.split(":", 1)[0] if ":" in r.request.id else "0"
        c = counts.setdefault(key, [0, 0])
        c[0] += 1
        c[1] += r.outcome.value != "MET"
    return {k: 100.0 * bad / n for k, (n, bad) in counts.items()}


def segment_line(names: Sequence[str], reports: Sequence[Any]) -> str:
    """Violation % per replayed segment for each configuration, and in how many segments the second
    (the best policy) missed fewer than the first (the reference): a count that one stall of a shared
    machine, which can swing a pooled ratio, moves by one."""
    per = [segment_violations(rep.results) for rep in reports]
    keys = sorted(per[0], key=lambda k: int(k) if k.isdigit() else k)
    cells = ", ".join("/".join(f"{p.get(k, float('nan')):.0f}" for p in per) for k in keys)
    below = sum(per[1][k] < per[0][k] for k in keys)
    above = sum(per[1][k] > per[0][k] for k in keys)
    return (f"violation % per segment ({' / '.join(names)}): {cells}; {names[1]} below {names[0]} in {below} of "
            f"{len(keys)} segments, above in {above}")


def comparison_rows(summaries: Sequence[Mapping[str, Any]], lags: Sequence[Any] = ()
                    ) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table: one row per configuration (``lags``: each replay's SendLag, optional)."""
    header = ["configuration", "requests", "MET", "LATE", "not answered", "violation %", "P50 ms", "P95 ms",
              "P99 ms", "accuracy %", "eff. accuracy %", "exit mix (completed)"]
    if lags:
        header.insert(-1, "send lag p99 ms")
    rows = []
    for i, s in enumerate(summaries):
        o = s["outcomes"]
        unanswered = o["REJECTED"] + o["DROPPED"] + o["FAILED"]
        row = [s["policy"], str(s["requests"]), str(o["MET"]), str(o["LATE"]), str(unanswered),
               f"{100 * s['violation_ratio']:.2f}", _ms(s["p50_ms"]), _ms(s["p95_ms"]), _ms(s["p99_ms"]),
               _pct(s["mean_accuracy"]), _pct(s["effective_accuracy"]), exit_mix(s)]
        if lags:
            lag = lags[i]
            row.insert(-1, "-" if lag is None else f"{lag.p99_ms:.1f}")
        rows.append(row)
    return header, rows


def cpu_rows(cpu_s: Mapping[str, Mapping[str, float]], requests: Mapping[str, int]
             ) -> tuple[list[str], list[list[str]]]:
    """CPU ms per replayed request by component (``server``, ``proxy``, ``client``, ``rest of Ray``)."""
    parts = ["server", "proxy", "client", "rest of Ray"]
    header = ["configuration", *(f"{p} ms" for p in parts), "total ms"]
    rows = []
    for name, used in cpu_s.items():
        n = max(requests.get(name, 0), 1)
        rows.append([name, *(f"{1000 * used.get(p, 0.0) / n:.2f}" for p in parts),
                     f"{1000 * sum(used.values()) / n:.2f}"])
    return header, rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_plot(reports: Sequence[Any], path: Path, title: str) -> Path:
    """One PNG: client-side latency CDF per configuration (deadline classes marked) and exit mix bars."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    fig, (ax_cdf, ax_mix) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    deadlines = sorted({round(r.request.slo_ms, 3) for rep in reports for r in rep.results})
    for rep in reports:
        lat = np.sort([r.latency_ms for r in rep.results if r.latency_ms is not None])
        if len(lat):
            # Unanswered requests keep the CDF below 1: its height at x is the share answered within x ms.
            ax_cdf.step(lat, np.arange(1, len(lat) + 1) / len(rep.results), where="post", label=rep.policy)
    for d in deadlines[:6]:
        ax_cdf.axvline(d, color="grey", lw=0.8, ls=":")
    ax_cdf.set_xscale("log")
    ax_cdf.set_xlabel("client-side latency, ms (dotted: deadline classes)")
    ax_cdf.set_ylabel("share of all requests answered within x")
    ax_cdf.set_title("latency CDF")
    ax_cdf.grid(alpha=0.3)
    ax_cdf.legend(fontsize=8, loc="lower right")
    _exit_bars(ax_mix, reports)
    fig.suptitle(textwrap.fill(title, 150), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _exit_bars(ax: Any, reports: Sequence[Any]) -> None:
    """Stacked bars per (configuration, model): the share of completed requests leaving at each exit
    depth (0 = shallowest, last = final)."""
    labels, shares, names = [], [], []
    depth = max(len(rep.profile.model(m).exits) for rep in reports for m in rep.profile.model_names)
    for rep in reports:
        summary = rep.summary()
        for m in rep.profile.model_names:
            exits = rep.profile.model(m).exits
            counts = summary["exits"].get(m, {})
            total = sum(counts.values())
            # Specs and batching labels have no spaces ("lookahead:latency_target=0.5"): break at : and ,
            wrapped = textwrap.fill(rep.policy.replace(":", ": ").replace(",", ", "), 12, break_long_words=False)
            labels.append(f"{wrapped}\n{m}")
            # Align each model's final exit with the top level so "final" is one colour for all models.
            row, named = [0.0] * depth, [""] * depth
            for k, e in enumerate(exits):
                row[depth - len(exits) + k] = 100 * counts.get(e, 0) / total if total else 0.0
                named[depth - len(exits) + k] = e
            shares.append(row)
            names.append(named)
    bottom = np.zeros(len(labels))
    for level in range(depth):
        vals = np.array([s[level] for s in shares])
        name = "final exit" if level == depth - 1 else f"{depth - 1 - level} exit(s) before final"
        ax.bar(range(len(labels)), vals, bottom=bottom, label=name)
        for x, (v, b) in enumerate(zip(vals, bottom)):
            if v >= 7:  # name the exit inside its segment where it fits
                ax.text(x, b + v / 2, f"{names[x][level]}\n{v:.0f}%", ha="center", va="center", fontsize=6)
        bottom += vals
    ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=0)
    ax.set_ylabel("% of completed requests")
    ax.set_title("exit mix")
    ax.legend(fontsize=7, loc="lower right")
