"""Accuracy budget: which exit each model can afford at the observed load.

A fluid view of the GPU: model m receives ``rate_m`` requests per second and, at exit e, each costs
``c(m, e) = E(m, e, Bmax) / Bmax`` ms of GPU time, ``E`` being the expected slot time (full batches:
costing the batches actually observed feeds back, small batches making exits look dearer and the
budget then starving the very batching that would make them cheap). Starting from every model at its
shallowest allowed exit, upgrades along each model's accuracy-vs-cost upper hull are bought in order
of accuracy gained per ms of GPU time until the planned busy time reaches ``target_load`` x 1000 ms
per second (a fractional knapsack, optimal for the fluid problem). The last upgrade may be funded
only in part (the *split*; it takes whatever budget is left): that model alternates between its two
exits so that the budgeted share of its requests gets the deeper one.

The budget caps the exit a policy may choose; deadlines may still force a shallower one.

**Backlog timing of the split** (``backlog_timing``, on by default). The fluid share says how much
of the split model's traffic the budget can afford on average, but counting requests to hit it is a
poor controller under load: the share comes from noisy rates at a planned load near 100%, so the
queues either drain, and slots run partial batches (each pays the slot's fixed cost for fewer
requests), or grow until deadlines force exits down. Instead the policy tells ``cap`` whether the
backlog is short: some busy model (one whose arrivals fill a full batch well within its deadline)
has less than a full batch queued. The split model then takes its deeper exit: the longer slot lets
the queues fill, and its time buys accuracy instead of the fixed cost of partial batches. While
every busy model has a full batch queued it takes the shallower one, and the backlog drains. So the
queues hover around one full batch each, the least backlog that keeps every batch full, and the
realised share follows what the device can actually carry. With no busy model (light traffic or
short deadlines) batches are partial anyway, the full-batch costs the solution assumed are too
optimistic, and the split's marginal upgrade is not bought.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Mapping, Sequence

from scheduler.types import Plan


class ExitBudget:
    def __init__(self, models: Sequence[str], allowed: Mapping[str, tuple[int, ...]], bmax: int,
                 target_load: float = 0.8, horizon_s: float = 1.0, burst_horizon_s: float | None = 0.2,
                 resolve_every: int = 4,
                 adapt: bool = True, forced_share: float = 0.05, load_step: float = 0.02,
                 load_bounds: tuple[float, float] = (0.5, 1.0), backlog_timing: bool = True) -> None:
        if not 0.0 < target_load <= 1.0:
            raise ValueError(f"target_load must be in (0, 1], got {target_load}")
        self.models = tuple(models)
        self.allowed = {m: allowed[m] for m in self.models}
        self.bmax = bmax
        self.target_load = target_load
        self.horizon_s = horizon_s
        self.burst_horizon_s = burst_horizon_s
        self.resolve_every = resolve_every
        self.adapt = adapt
        self.forced_share = forced_share
        self.load_step = load_step
        self.load_bounds = load_bounds
        self.backlog_timing = backlog_timing
        self._served = 0  # requests served since the last solve
        self._forced = 0  # of which deadlines forced below their model's cap
        self._arrivals: dict[str, deque[float]] = {m: deque() for m in self.models}
        self._batch: dict[str, float] = dict.fromkeys(self.models, float(bmax))
        self._expected: Mapping[str, Sequence[Sequence[float]]] = {}
        self._accuracy: dict[str, list[float]] = {}
        self._caps: dict[str, int] = {m: a[-1] if a else 0 for m, a in self.allowed.items()}
        self._split: tuple[str, int, float] | None = None  # (model, deeper exit, share of requests)
        self._split_served = [0, 0]  # requests of the split model served: [total, at the deeper exit]
        self._since = 0
        self._latest_s = -float("inf")
        self._rates: dict[str, float] = {}  # the arrival rates of the last solve
        # Arrivals come from the admitting thread, slots from the engine's: one lock for both.
        self._lock = threading.Lock()

    def set_costs(self, expected: Mapping[str, Sequence[Sequence[float]]],
                  accuracy: Mapping[str, Mapping[str, float]]) -> None:
        """Expected slot times (model -> exit index -> batch -> ms) and accuracies (model -> exit -> acc)."""
        self._expected = expected
        self._accuracy = {m: list(acc.values()) for m, acc in accuracy.items()}

    # -- what the policy asks --------------------------------------------------------------

    def cap(self, model: str, backlog_short: bool = False) -> int:
        """The deepest exit index ``model`` may run now. ``backlog_short``: some busy model has less than a
        full batch queued (with ``backlog_timing`` it decides the split model's exit)."""
        split = self._split
        if split is not None and split[0] == model:
            if self.backlog_timing:
                return split[1] if backlog_short else self._caps[model]
            total, deep = self._split_served
            return split[1] if deep < split[2] * (total + 1) else self._caps[model]
        return self._caps[model]

    def solved_rate_rps(self, model: str) -> float:
        """The arrival rate of ``model`` the last solve used (0 before the first)."""
        return self._rates.get(model, 0.0)

    @property
    def split_model(self) -> str | None:
        """The model whose next exit the budget can afford only in part, if any."""
        return self._split[0] if self._split is not None else None

    def describe(self) -> dict:
        return {"caps": dict(self._caps), "split": self._split, "target_load": self.target_load,
                "rates_rps": {m: round(self.rate_rps(m), 1) for m in self.models}}

    # -- learning --------------------------------------------------------------------------

    def arrival(self, model: str, arrival_s: float) -> None:
        """Count one admitted request (called at admission, so a burst shows at once)."""
        with self._lock:
            self._arrivals[model].append(arrival_s)
            self._latest_s = max(self._latest_s, arrival_s)

    def observe(self, plan: Plan, exit_index: int) -> None:
        """Track batch sizes, deadline-forced downgrades and the split; re-solve every ``resolve_every`` slots."""
        m = plan.model
        self._batch[m] += 0.1 * (plan.batch_size - self._batch[m])
        self._served += plan.batch_size
        if exit_index < self._caps[m]:
            self._forced += plan.batch_size
        split = self._split
        if split is not None and split[0] == m:
            self._split_served[0] += plan.batch_size
            if exit_index >= split[1]:
                self._split_served[1] += plan.batch_size
        self._since += 1
        if self._since >= self.resolve_every:
            self._since = 0
            self.solve(self._latest_s)

    def base_load(self) -> float:
        """The device's share the admitted traffic needs at the current arrival rates with every model at its
        cheapest allowed exit in full batches (the fluid view before any upgrade is bought)."""
        with self._lock:  # the arrivals' deques grow on the admitting thread
            rates = {m: self.rate_rps(m) for m in self.models}
        return sum(rates[m] * self._cost_ms(m, exits[0]) for m, exits in self.allowed.items() if exits) / 1000.0

    def _cost_ms(self, model: str, exit_index: int) -> float:
        """Device time per request at ``exit_index`` in a full batch: the fluid model's unit of cost."""
        return self._expected[model][exit_index][self.bmax] / self.bmax

    def rate_rps(self, model: str) -> float:
        """Arrival rate over the last ``horizon_s``, or over the last ``burst_horizon_s`` when higher:
        the budget follows the start of a burst at once and its end only slowly."""
        a = self._arrivals[model]
        rate = _rate(a, self.horizon_s)
        if self.burst_horizon_s is not None:
            rate = max(rate, _rate(a, self.burst_horizon_s))
        return rate

    def solve(self, now_s: float) -> None:
        """Recompute the caps from the arrival rates of the last ``horizon_s`` seconds."""
        with self._lock:
            for a in self._arrivals.values():
                while a and a[0] < now_s - self.horizon_s:
                    a.popleft()
            rates = {m: self.rate_rps(m) for m in self.models}
        if not self._expected:
            return
        if self.adapt and self._served:
            # Deadlines overriding the budget often means it buys deep exits the queues cannot afford.
            step = -self.load_step if self._forced > self.forced_share * self._served else self.load_step
            lo, hi = self.load_bounds
            self.target_load = min(hi, max(lo, self.target_load + step))
        self._served = self._forced = 0
        budget_ms = self.target_load * 1000.0
        steps = []  # (accuracy per ms, model, from exit, to exit, ms per second the step costs)
        caps = {}
        for m in self.models:
            exits = self.allowed[m]
            if not exits:
                continue
            rate = rates[m]
            cost = {e: self._cost_ms(m, e) for e in exits}
            hull = _upper_hull([(cost[e], self._accuracy[m][e], e) for e in exits])
            caps[m] = hull[0][2]
            budget_ms -= rate * hull[0][0]
            for (c0, a0, e0), (c1, a1, e1) in itertools.pairwise(hull):
                steps.append(((a1 - a0) / (c1 - c0), m, e0, e1, rate * (c1 - c0)))
        # Within one model the hull's steps already come in falling efficiency; the sort keeps that order.
        steps.sort(key=lambda s: -s[0])
        split = None
        blocked: set[str] = set()
        for _, m, e0, e1, step_ms in steps:
            if m in blocked or caps[m] != e0:
                continue
            if step_ms <= budget_ms:
                caps[m] = e1
                budget_ms -= step_ms
            else:
                if split is None and budget_ms > 0:
                    split = (m, e1, budget_ms / step_ms)
                    budget_ms = 0.0  # the split takes what is left: a later, cheaper step must not spend it again
                blocked.add(m)
        if split is None or self._split is None or self._split[:2] != split[:2]:
            self._split_served = [0, 0]
        self._caps.update(caps)
        self._split = split
        self._rates = rates


def _rate(arrivals: deque[float], horizon_s: float) -> float:
    """Requests per second among ``arrivals`` (in arrival order) within ``horizon_s`` of the latest one."""
    if len(arrivals) < 2:
        return 0.0
    last = arrivals[-1]
    start = last - horizon_s
    if arrivals[0] >= start:
        span, n = last - arrivals[0], len(arrivals) - 1
    else:
        n = 0
        for t in reversed(arrivals):
            if t < start:
                break
            n += 1
        span = horizon_s
    return n / span if span > 0 else 0.0


def _upper_hull(points: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """The concave upper hull of (cost, accuracy, exit) from the cheapest point, accuracy rising."""
    pts = sorted(points)
    hull: list[tuple[float, float, int]] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue  # costs more, gives no more accuracy
        while len(hull) >= 2:
            (c0, a0, _), (c1, a1, _) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord from hull[-2] to p
            if (a1 - a0) * (p[0] - c0) <= (p[1] - a0) * (c1 - c0):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull
