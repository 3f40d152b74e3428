"""The reference EdgeServing policy: one-step stability-score scheduling.

Faithful to the paper's public code, generalised to per-request deadlines (see ARCHITECTURE.md),
quirks included: it is the anchor every other policy is measured against.

For each model m, its candidate batch is the first B_m = min(|Q_m|, Bmax) requests, its exit e_m
the deepest that meets every deadline of that batch (else the shallowest; the deepest for an empty
queue), and tau_m = L(m, e_m, B_m). The score S_m sums phi_i(w_i + tau_m) over every queued request
not in m's batch, with phi_i(x) = min(exp(x / slo_i - 1), 10): how far running m pushes everyone
else towards their deadlines. The lowest score wins (ties to the first model in profile order);
its exit is then recomputed at batch size Bmax, as the reference does. An empty winner idles 0.5 ms.
"""

from __future__ import annotations

import math

import numpy as np

from scheduler.policies.base import Policy, Queues, deepest_feasible_exit
from scheduler.profile import Profile
from scheduler.types import Plan

IDLE_S = 0.0005  # the reference sleeps 0.5 ms when the chosen model has nothing queued
PHI_CAP = 10.0
# phi = min(exp(x), 10); the exponent is capped at ln 10 first so very late requests never overflow.
LOG_PHI_CAP = math.log(PHI_CAP)
# Below this many queued requests a Python loop beats numpy's per-call overhead.
SMALL_QUEUE = 24


class EdgeServingPolicy(Policy):
    name = "edgeserving"

    def scores(self, now_s: float, queues: Queues, profile: Profile) -> tuple[list[int], list[float], list[float]]:
        """Per model in queue order: candidate batch size B_m, slot time tau_m (ms) and score S_m."""
        rows = self.table(profile).rows
        qs = list(queues.values())
        sizes = [min(len(q), self.bmax) for q in qs]
        taus = []
        for q, b in zip(qs, sizes):
            model_rows = rows[q.model]
            if b == 0:
                taus.append(model_rows[-1][0])
                continue
            e = deepest_feasible_exit(model_rows, b, (q.min_deadline_s(b) - now_s) * 1000.0)
            taus.append(model_rows[0 if e is None else e][b])
        total = sum(len(q) for q in qs)
        scores = (_scores_loop if total <= SMALL_QUEUE else _scores_numpy)(now_s, qs, sizes, taus)
        return sizes, taus, scores

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        sizes, _, scores = self.scores(now_s, queues, profile)
        qs = list(queues.values())
        best = min(range(len(qs)), key=scores.__getitem__)  # first minimum = strict < in profile order
        q = qs[best]
        if not q:
            return Plan.idle(now_s + IDLE_S)
        b = sizes[best]
        model_rows = self.table(profile).rows[q.model]
        # The reference re-picks the exit at batch size Bmax, whatever the queue holds.
        e = deepest_feasible_exit(model_rows, self.bmax, (q.min_deadline_s(b) - now_s) * 1000.0)
        e = 0 if e is None else e
        return Plan.run(q.model, profile.model(q.model).exits[e], q.head(b), model_rows[e][b])


def _scores_loop(now_s: float, qs: list, sizes: list[int], taus: list[float]) -> list[float]:
    """S_m for every model, as a plain loop over the queued requests (fast for short queues)."""
    entries = [(qi, pos, (now_s - r.arrival_s) * 1000.0, (r.deadline_s - r.arrival_s) * 1000.0)
               for qi, q in enumerate(qs) for pos, r in enumerate(q)]
    scores = []
    for m, tau in enumerate(taus):
        s = 0.0
        size = sizes[m]
        for qi, pos, w, slo in entries:
            if qi == m and pos < size:
                continue
            s += min(math.exp(min((w + tau) / slo - 1.0, LOG_PHI_CAP)), PHI_CAP)
        scores.append(s)
    return scores


def _scores_numpy(now_s: float, qs: list, sizes: list[int], taus: list[float]) -> list[float]:
    """The same scores, vectorised: one (requests x models) matrix of phi.

    Units cancel: (w + tau) / slo - 1 = (now + tau - deadline) / (deadline - arrival), in seconds.
    """
    arrival = np.concatenate([q.arrival_s for q in qs])
    deadline = np.concatenate([q.deadline_s for q in qs])
    x = np.add.outer(now_s - deadline, np.asarray(taus) / 1000.0)
    x /= (deadline - arrival)[:, None]
    np.minimum(x, LOG_PHI_CAP, out=x)
    np.exp(x, out=x)
    np.minimum(x, PHI_CAP, out=x)  # exp(ln 10) rounds to 10.000000000000002
    offset = 0
    for m, q in enumerate(qs):  # m's own batch does not count towards S_m
        x[offset:offset + sizes[m], m] = 0.0
        offset += len(q)
    return x.sum(axis=0).tolist()
