"""``lookahead``: deadline- and accuracy-aware joint choice of model, batch size and exit, protecting
every other queue's most urgent requests.

All times in ms. ``E(m, e, b)`` is the expected slot time of b requests of model m run to exit e:
the profiled mean, corrected online from measured slots (``scheduler.correction``: a sliding window
per (model, exit, batch)). ``S(m, e, b) = E x margin`` is the *safe* slot time, the margin being the
``margin_quantile`` (0.999) of the observed measured / expected ratio, so the policy plans with the
noise the device shows rather than a fixed profile quantile.

Each decision:

1. **Allowed exits.** Per model, the exits on the accuracy/latency Pareto front (a dominated exit,
   slower and no more accurate than another, is never run) at or above the model's accuracy floor.
   ``lo_m`` is the shallowest allowed exit.
2. **Shedding.** A queued request that cannot meet its deadline even alone at ``lo_m``
   (``now + E(m, lo_m, 1) > deadline``) is hopeless. ``shed="drop"`` drops it at once;
   ``"salvage"`` (the default) keeps it out of every on-time decision and answers it late only with
   GPU time no on-time request needs (step 6), dropping it ``salvage_ms`` past its deadline:
   - late requests are answered the most recently due first (``salvage_order="newest"``): the same
     spare time answers as many of them, each less late, and a backlog older than the spare time can
     clear ages out (``"oldest"``, first due first, makes every late answer wait behind the oldest);
   - a full queue (the worker's ``queue_bound``) gives the place of its stalest late request to a new
     request that can still meet its deadline (``displace``; the late one is dropped) instead of
     refusing the newcomer;
   - a late sample of a call (one client request of several samples) some of whose samples already
     ran is dropped, not salvaged: the call is answered only when its last sample ends.
   ``"reject"`` also refuses at admission the requests that are hopeless on arrival, counting the
   queued backlog with earlier deadlines; ``"off"`` runs them like any other.
3. **Urgent batches.** Each model's candidate batch is its ``min(|Q_m|, Bmax)`` requests with the
   earliest deadlines (one queue may hold several deadline classes); ``d_m`` is the earliest. The
   rest of the queue forms later batches of Bmax in deadline order.
4. **Look-ahead.** Running model m for ``S`` ms is *safe* when, after it, an earliest-deadline-first
   schedule of everything left still meets every deadline at the shallowest allowed exits: every
   other model's batches, m's later batches and (``reserve``) per model one request arriving now
   with its shortest recent deadline, since a slot cannot be interrupted for it. So
   ``S <= slack_m = min over that EDF order of (d_k - now - sum of E up to k - (margin - 1) x
   sqrt(sum of E^2 up to k))`` (``scheduler.policies.slack``).
5. **Batch and exit.** Per model, the most accurate allowed exit, at most the budget's cap (step 7),
   whose ``S`` meets the batch's own earliest deadline and the slack; when none fits the whole
   batch, the largest most-urgent prefix that fits (batch sizes 1..Bmax, the rest waiting).
6. **Model.** Among the candidates, the earliest latest start ``d_m - S(m, e_m, b_m)``: the batch
   that can least afford to wait. A batch of late (salvaged) requests goes first only if it ends
   before that latest start and within the slack for everyone, at the most accurate exit that fits
   (spare time: the budget does not cap it). At a live load ``u`` (the admitted arrival rates the
   budget counts, in full batches at the shallowest exits) only ``1 - u`` of that room is spare: the
   on-time requests arriving during a late slot of ``L`` ms take ``L / (1 - u)`` to catch up, so at
   80% load a late slot needs five times its length (``salvage_load``; no late slot from ``u >= 1``
   while on-time requests wait). With no candidate (overload), the model with the
   earliest deadline runs at the most accurate exit within its cap that meets its head's deadline
   (else the shallowest); its batch is cut to what meets that deadline only when nothing queues
   behind it, since under a backlog smaller batches cost throughput.
7. **Accuracy budget** (``budget``, ``scheduler.policies.budget``). From the arrival rates counted at
   admission (over 1 s, or over 0.2 s when higher, so bursts show at once), a fractional knapsack
   gives each model the exit mix that maximises accuracy at a planned GPU load of ``target_load``,
   buying exit upgrades by accuracy gained per ms: under load the model whose deep exit buys the
   least accuracy per ms steps down first. The load target adapts: it falls while deadlines force
   more than 5% of requests below their cap, and rises otherwise.

8. **Latency target** (``latency_target``, off at 1.0). Below 1, each batch aims to finish within
   that fraction of its requests' deadlines (``arrival + latency_target x relative deadline``, the
   earliest in the batch): step 5's exit is the most accurate that ends the batch by that target,
   else (the batch is already behind it) one allowed exit shallower than step 5's, to catch up.
   Deadlines, shedding and the look-ahead are unchanged; the option trades accuracy for a lower
   P95 at moderate load, where step 5 spends every slack millisecond on depth.

``observe()`` feeds every measured slot (``plan.predicted_ms`` against ``slot.slot_ms``) to the
correction; ``stats()`` reports the prediction error, the margin and the budget.

Options, each turning one capability off for the ablation: ``lookahead``, ``reserve``,
``accuracy_aware`` (off: every exit allowed, no budget), ``budget``, ``shed``, ``adaptive`` (off:
the static profile ``quantile``, no correction), ``edf_batches`` (off: batches in arrival order),
``salvage_load`` (off: a late slot may take all the room the queued requests leave).
``floors`` maps a model to its accuracy floor: exits below it are never run, and a request the
floor makes infeasible is refused at admission with reason ``accuracy_floor_unreachable``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from scheduler.correction import LatencyCorrection
from scheduler.policies.base import Policy, Queues
from scheduler.policies.budget import ExitBudget
from scheduler.policies.exits import allowed_exits
from scheduler.policies.slack import EdfSlack
from scheduler.profile import Profile
from scheduler.queues import RequestQueue
from scheduler.types import Plan, Request, SlotResult

INF = float("inf")
SHED_MODES = ("drop", "salvage", "reject", "off")
SALVAGE_ORDERS = ("newest", "oldest")
ANSWERED_CALLS = 4096
DEADLINE_INFEASIBLE = "deadline_infeasible"  # same string as scheduler.engine's admission reason
ACCURACY_FLOOR = "accuracy_floor_unreachable"
# Up to this many queued requests a Python loop beats numpy's per-call overhead.
SMALL_QUEUE = 16
# The look-ahead sums at most this many later batches per model: beyond them a deep backlog is overload anyway.
MAX_CHUNKS = 12
# A model is "busy" when a full batch of its requests arrives within this share of its shortest deadline.
FULL_BATCH_WAIT = 0.5


@dataclass(slots=True)
class _Head:
    """One model's candidate batch and what it leaves behind."""

    model: str
    batch: tuple[Request, ...]  # the most urgent requests, earliest deadline first
    first_s: float  # earliest deadline in the batch
    rest: list[tuple[float, int]]  # the requests left out, as later batches: (earliest deadline_s, size)


@dataclass(slots=True)
class _Tables:
    """Per-profile, per-correction-version lookups, rebuilt when either changes."""

    key: tuple[int, int]
    safe: dict[str, list[list[float]]]  # model -> exit index -> batch -> ms, with the safety margin
    expected: dict[str, list[list[float]]]  # the same without the margin
    allowed: dict[str, tuple[int, ...]]  # model -> allowed exit indices, shallowest first
    exits: dict[str, tuple[str, ...]]
    chain: dict[str, list[list[float]]]  # durations the look-ahead sums: expected (adaptive) or safe
    spread: float  # margin - 1 for the look-ahead's pooled deviation; 0 when chain is already safe


class LookaheadPolicy(Policy):
    name = "lookahead"

    def __init__(self, bmax: int = 10, quantile: str = "p99", *, lookahead: bool = True, reserve: bool = True,
                 accuracy_aware: bool = True, shed: str = "salvage", adaptive: bool = True, budget: bool = True,
                 edf_batches: bool = True, floors: Mapping[str, float] | None = None,
                 margin_quantile: float = 0.999, target_load: float = 0.8, salvage_ms: float = 10_000.0,
                 budget_options: Mapping[str, object] | None = None, preempt: bool = False,
                 latency_target: float = 1.0, salvage_order: str = "newest",
                 salvage_load: bool = True) -> None:
        super().__init__(bmax, quantile)
        if not 0.0 < latency_target <= 1.0:
            raise ValueError(f"latency_target must be in (0, 1] (a fraction of each deadline), got {latency_target}")
        if shed not in SHED_MODES:
            raise ValueError(f"shed must be one of {SHED_MODES}, got {shed!r}")
        if salvage_order not in SALVAGE_ORDERS:
            raise ValueError(f"salvage_order must be one of {SALVAGE_ORDERS}, got {salvage_order!r}")
        for m, f in (floors or {}).items():
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"accuracy floor of {m!r} must be in [0, 1], got {f}")
        self.lookahead = lookahead
        self.reserve = reserve
        self.accuracy_aware = accuracy_aware
        self.shed = shed
        self.adaptive = adaptive
        self.use_budget = budget and accuracy_aware
        self.edf_batches = edf_batches
        self.floors = dict(floors or {})
        self.margin_quantile = margin_quantile
        self.target_load = target_load
        self.salvage_ms = salvage_ms
        self.salvage_newest = salvage_order == "newest"
        self.salvage_load = salvage_load
        self.budget_options = dict(budget_options or {})  # extra ExitBudget settings (horizons, adaptation)
        self.preemption = preempt  # ask to run slots stage by stage and stop them at exit boundaries
        self.latency_target = latency_target
        self._correction: LatencyCorrection | None = None
        self._correction_for: int | None = None
        self._tables: _Tables | None = None
        self._budget: ExitBudget | None = None
        self._recent_slo_ms: dict[str, deque[float]] = {}  # per model, shortest SLO of each recent slot
        self._shortest_ms: dict[str, float] = {}  # per model, the minimum of _recent_slo_ms
        self._early_slots = 0  # slots where confidence exits let samples leave before the planned exit
        self._early_saved_ms = 0.0  # their expected (full-depth) time minus their measured time
        self._backlog_short = False  # this decision's view of the backlog, for the budget's split
        self._decided_s = -INF  # when the running slot was planned: later arrivals are news to it
        self._preempted_slots = 0
        self._preempted_lost = 0.0  # accuracy given up by stopped batches (sum over their requests)
        # Calls (of several samples) with a sample answered, most recent last: a late call-mate is not
        # salvaged (``_unwaited``). Bounded: a call older than the last ANSWERED_CALLS is long settled.
        self._answered_order: deque[str] = deque(maxlen=ANSWERED_CALLS)
        self._answered_calls: set[str] = set()

    # -- tables ----------------------------------------------------------------------------

    def _prepare(self, profile: Profile) -> _Tables:
        if self._correction_for != id(profile):
            self._correction_for = id(profile)
            self._correction = (LatencyCorrection(profile, margin_quantile=self.margin_quantile)
                                if self.adaptive else None)
            self._tables = None
            self._budget = None
        version = self._correction.version if self._correction else 0
        t = self._tables
        if t is not None and t.key == (id(profile), version):
            return t
        n = self.bmax + 1
        exits = {m: mp.exits for m, mp in profile.models.items()}
        c = self._correction
        if c is not None:
            margin = c.margin()
            expected = {m: [[c.expected_ms(m, e, b) for b in range(n)] for e in range(len(ex))]
                        for m, ex in exits.items()}
            safe = {m: [[v * margin for v in row] for row in rows] for m, rows in expected.items()}
        else:
            mean, q = profile.table("mean").rows, profile.table(self.quantile).rows
            expected = {m: [list(row[:n]) for row in mean[m]] for m in exits}
            safe = {m: [list(row[:n]) for row in q[m]] for m in exits}
        allowed = t.allowed if t is not None else allowed_exits(
            profile, self.bmax, self.floors, self.accuracy_aware)
        if c is not None:
            chain, spread = expected, c.margin() - 1.0
        else:
            chain, spread = safe, 0.0
        self._tables = _Tables((id(profile), version), safe, expected, allowed, exits, chain, spread)
        if self.use_budget:
            if self._budget is None:
                self._budget = ExitBudget(profile.model_names, allowed, self.bmax,
                                          **{"target_load": self.target_load, **self.budget_options})
            self._budget.set_costs(expected, {m: profile.model(m).accuracy for m in exits})
        return self._tables

    # -- admission -------------------------------------------------------------------------

    def admit(self, now_s: float, request: Request, queues: Queues, profile: Profile) -> str | None:
        t = self._prepare(profile)
        allowed = t.allowed[request.model]
        if not allowed:
            return ACCURACY_FLOOR
        reason = self._refusal(now_s, request, queues, t)
        if reason is None and self._budget is not None:
            self._budget.arrival(request.model, request.arrival_s)
        return reason

    def _refusal(self, now_s: float, request: Request, queues: Queues, t: _Tables) -> str | None:
        lo = t.allowed[request.model][0]
        if self.floors.get(request.model) is None and self.shed != "reject":
            return None
        if request.deadline_s < _hopeless_before_s(t, request.model, now_s):
            if request.model in self.floors and lo > 0 and now_s + t.expected[request.model][0][1] / 1000.0 \
                    <= request.deadline_s:
                return ACCURACY_FLOOR  # the deadline is reachable, but only below the floor
            return DEADLINE_INFEASIBLE
        if self.shed == "reject" and now_s + self._backlog_ms(request, queues, t) / 1000.0 > request.deadline_s:
            return DEADLINE_INFEASIBLE
        return None

    def displace(self, now_s: float, request: Request, queues: Queues, profile: Profile) -> Request | None:
        """With ``shed="salvage"``, a full queue gives the place of its stalest late request (one that cannot
        meet its deadline even alone at the shallowest exit, kept only for spare time) to ``request`` when
        ``request`` can still meet its own behind every queued request that can still meet an earlier
        deadline: a late answer is worth less than an on-time one, and a queue full of salvage must not
        refuse the requests it could serve. Past capacity the backlog of live requests fails that test, and
        the full queue refuses as before (admitting more than the device can serve costs on-time answers)."""
        queue = queues[request.model]
        if self.shed != "salvage" or not queue:
            return None
        t = self._prepare(profile)
        if not t.allowed[request.model]:
            return None
        deadlines = queue.deadline_s
        i = int(np.argmin(deadlines))
        if deadlines[i] >= _hopeless_before_s(t, request.model, now_s):
            return None  # nothing here is late
        if now_s + self._backlog_ms(request, queues, t, live_at_s=now_s) / 1000.0 > request.deadline_s:
            return None  # the newcomer would miss too
        return queue[i]

    def _backlog_ms(self, request: Request, queues: Queues, t: _Tables, live_at_s: float | None = None) -> float:
        """Least GPU time before ``request`` can finish under EDF: every queued request with an earlier
        deadline, in full batches at the shallowest allowed exits, then its own batch. With ``live_at_s``,
        only the queued requests that can still meet their deadlines then (the others wait for spare time)."""
        total = 0.0
        for m, q in queues.items():
            k = 0
            if q and t.allowed[m]:
                d = q.deadline_s
                due = d <= request.deadline_s
                if live_at_s is not None:
                    due &= d >= _hopeless_before_s(t, m, live_at_s)
                k = int(np.count_nonzero(due))
            if m == request.model:
                k += 1
            if k == 0 or not t.allowed[m]:
                continue
            row = t.expected[m][t.allowed[m][0]]
            full, part = divmod(k, self.bmax)
            total += full * row[self.bmax] + (row[part] if part else 0.0)
        return total

    # -- the decision ----------------------------------------------------------------------

    def plan(self, now_s: float, queues: Queues, profile: Profile) -> Plan | None:
        t = self._prepare(profile)
        self._decided_s = now_s
        drop: list[Request] = []
        late: list[list[Request]] = []
        heads: list[_Head] = []
        for q in queues.values():
            if q:
                head = self._head(now_s, q, t, drop, late)
                if head is not None:
                    heads.append(head)
        if not heads:
            if late:
                edf = self._lookahead(now_s, [], t, queues)
                room_ms = edf.slack_ms(-1) if edf is not None else INF
                plan = self._salvage(now_s, late, t, queues, drop, room_ms)
                if plan is not None:
                    return plan
                batch = self._late_first(late)[: self.bmax]
                e = t.allowed[batch[0].model][0]
                return Plan.run(batch[0].model, t.exits[batch[0].model][e], tuple(batch),
                                t.safe[batch[0].model][e][len(batch)], drop=tuple(drop))
            return Plan.idle(INF, drop=tuple(drop))
        self._backlog_short = self._short_backlog(queues)
        edf = self._lookahead(now_s, heads, t, queues)
        best = None  # (latest start, model, exit index, safe ms, batch)
        for i, h in enumerate(heads):
            choice = self._choose(now_s, i, h, t, edf)
            if choice is not None and (best is None or choice[0] < best[0]):
                best = choice
        if best is None:  # nothing is safe: the earliest deadline goes
            h = min(heads, key=lambda x: x.first_s)
            e = t.allowed[h.model][0]
            row = t.safe[h.model][e]
            room_ms = (h.first_s - now_s) * 1000.0
            k = len(h.batch)
            # Cut the batch only to save its head and only without a backlog behind it: under a
            # backlog, smaller batches would cost the throughput the queue needs.
            while not h.rest and k > 1 and row[k] > room_ms:
                k -= 1
            batch = h.batch[:k] if row[k] <= room_ms else h.batch
            deeper = self._deepest_fitting(t, h.model, len(batch), room_ms)  # its own deadline, within the cap
            e = e if deeper is None else deeper
            best = (0.0, h.model, e, t.safe[h.model][e][len(batch)], batch)
        elif late and edf is not None:
            # A late batch may go first if it ends before any live batch must start at its chosen exit.
            room_ms = (best[0] - now_s) * 1000.0
            if room_ms > 0:
                room_ms = min(room_ms, edf.slack_ms(-1))
                plan = self._salvage(now_s, late, t, queues, drop, room_ms)
                if plan is not None:
                    return plan
        _, model, e, s_ms, batch = best
        return Plan.run(model, t.exits[model][e], batch, s_ms, drop=tuple(drop))

    def _choose(self, now_s: float, i: int, h: _Head, t: _Tables, edf: EdfSlack | None) -> tuple | None:
        """(latest start, model, exit, safe ms, batch) for model ``i``: its whole candidate batch at the
        most accurate exit that fits, else the largest prefix (most urgent first) that fits at any
        exit, the rest waiting as one more batch; None when not even one request fits."""
        slack_ms = edf.slack_ms(i) if edf is not None else INF
        room_ms = min(slack_ms, (h.first_s - now_s) * 1000.0)
        b = len(h.batch)
        e = self._deepest_fitting(t, h.model, b, room_ms)
        if e is not None:
            if self.latency_target < 1.0:
                e = self._toward_target(now_s, h, t, e, slack_ms)
            s_ms = t.safe[h.model][e][b]
            return (h.first_s - s_ms / 1000.0, h.model, e, s_ms, h.batch)
        if edf is not None and edf.slack_ms(-1) < 0:
            return None  # overloaded: cutting batches would only lower throughput (the fallback decides)
        row = t.safe[h.model][t.allowed[h.model][0]]
        for k in range(b - 1, 0, -1):
            if row[k] > room_ms:
                continue  # not even the shallowest exit fits this prefix
            if edf is not None:
                left_out = min(r.deadline_s for r in h.batch[k:])
                slack_ms = edf.slack_ms(i, extra=(left_out, t.chain[h.model][t.allowed[h.model][0]][b - k]))
            batch = h.batch[:k]
            first_s = min(r.deadline_s for r in batch)
            e = self._deepest_fitting(t, h.model, k, min(slack_ms, (first_s - now_s) * 1000.0))
            if e is not None:
                s_ms = t.safe[h.model][e][k]
                return (first_s - s_ms / 1000.0, h.model, e, s_ms, batch)
        return None

    def _toward_target(self, now_s: float, h: _Head, t: _Tables, e: int, slack_ms: float) -> int:
        """The exit for ``h``'s whole batch under the latency target, given ``e``, the most accurate one that
        meets its deadlines: the most accurate that also ends it by its target, else one allowed exit
        shallower than ``e``."""
        target_s = min(r.arrival_s + self.latency_target * r.slo_ms / 1000.0 for r in h.batch)
        on_time = self._deepest_fitting(t, h.model, len(h.batch), min(slack_ms, (target_s - now_s) * 1000.0))
        if on_time is not None:
            return min(on_time, e)
        allowed = t.allowed[h.model]
        return allowed[max(allowed.index(e) - 1, 0)]

    def _deepest_fitting(self, t: _Tables, model: str, b: int, room_ms: float, capped: bool = True) -> int | None:
        """The most accurate allowed exit (within the budget's cap when ``capped``) whose safe slot time
        fits ``room_ms``."""
        allowed = t.allowed[model]
        cap = self._budget.cap(model, self._backlog_short) if self._budget is not None and capped else allowed[-1]
        rows = t.safe[model]
        for e in reversed(allowed):
            if e <= cap and rows[e][b] <= room_ms:
                return e
        return None

    def _short_backlog(self, queues: Queues) -> bool:
        """Does some *busy* model have less than a full batch queued? A model is busy when its arrivals
        fill a batch of Bmax within ``FULL_BATCH_WAIT`` of its shortest recent deadline, so waiting for a
        full batch is cheap; for the others a short queue is no lack of backlog (the budget's split, see
        ``scheduler.policies.budget``)."""
        b = self._budget
        if b is None or b.split_model is None:
            return False
        need = self.bmax * 1000.0 / FULL_BATCH_WAIT
        for m, q in queues.items():
            if len(q) < self.bmax and b.solved_rate_rps(m) * self._shortest_ms.get(m, 0.0) >= need:
                return True
        return False

    def _unwaited(self, hopeless: list[Request], drop: list[Request]) -> list[Request]:
        """The hopeless requests worth salvaging; those of a call already partly answered go to ``drop``.

        A call of several samples is answered when its last sample ends, so salvaging a sample late holds
        back the call-mates a slot already answered: dropping it lets the call answer now (the others keep
        their verdicts). A call none of whose samples ran yet is salvaged like a lone request.
        """
        if not self._answered_calls:
            return hopeless
        mates = self._mates(hopeless)
        drop.extend(r for r, m in zip(hopeless, mates) if m)
        return [r for r, m in zip(hopeless, mates) if not m]

    def _mates(self, requests: Iterable[Request]) -> list[bool]:
        """Per request: is it a sample of a call a slot already partly answered?"""
        return [r.call in self._answered_calls for r in requests]

    def _late_first(self, late: list[list[Request]]) -> list[Request]:
        """The model whose late requests go first: the one with the most recently due (``salvage_order``
        "newest") or the oldest; each list is already in that order."""
        pick = max if self.salvage_newest else min
        return pick(late, key=lambda rs: rs[0].deadline_s)

    def _salvage(self, now_s: float, late: list[list[Request]], t: _Tables, queues: Queues,
                 drop: list[Request], room_ms: float) -> Plan | None:
        """A batch of late requests (in ``salvage_order``) in a slot of at most ``room_ms``, at the
        most accurate exit that fits; None when even the shallowest does not."""
        batch = tuple(self._late_first(late)[: self.bmax])
        model = batch[0].model
        # Spare time only: the budget, which rations time on-time requests need, does not cap it. But at the
        # admitted traffic's load u, the on-time requests arriving during a late slot of L ms take L / (1 - u)
        # to catch up with (the busy period it starts): that is the room it must fit (``salvage_load``).
        load = self._budget.base_load() if self._budget is not None and self.salvage_load else 0.0
        if load >= 1.0:
            return None
        e = self._deepest_fitting(t, model, len(batch), room_ms * (1.0 - load), capped=False)
        if e is None:
            return None
        return Plan.run(model, t.exits[model][e], batch, t.safe[model][e][len(batch)], drop=tuple(drop))

    def _head(self, now_s: float, q: RequestQueue, t: _Tables, drop: list[Request],
              late: list[list[Request]]) -> _Head | None:
        """The model's most urgent batch among the requests that can still meet their deadlines.

        Those that cannot are appended to ``drop``, or with ``shed="salvage"`` (while less than
        ``salvage_ms`` past their deadline) to ``late`` as one list per model of at most Bmax, in
        ``salvage_order`` (latest deadline first for "newest").
        """
        allowed = t.allowed[q.model]
        if not allowed:  # a floor no exit reaches: nothing here can be served (admission refuses these)
            drop.extend(q)
            return None
        cut_s = _hopeless_before_s(t, q.model, now_s) if self.shed != "off" else -INF
        stale_s = now_s - self.salvage_ms / 1000.0 if self.shed == "salvage" else INF
        bmax = self.bmax
        if len(q) <= SMALL_QUEUE:
            live = [r for r in q if r.deadline_s >= cut_s]
            if len(live) < len(q):
                hopeless = [r for r in q if r.deadline_s < cut_s]
                keep = self._unwaited([r for r in hopeless if r.deadline_s >= stale_s], drop)
                if keep:
                    keep.sort(key=_deadline, reverse=self.salvage_newest)
                    late.append(keep)
                drop.extend(r for r in hopeless if r.deadline_s < stale_s)
            if not live:
                return None
            if self.edf_batches:
                live.sort(key=_deadline)
            batch = tuple(live[:bmax])
            first_s = min(r.deadline_s for r in batch)
            rest = [(min(r.deadline_s for r in live[k:k + bmax]), len(live[k:k + bmax]))
                    for k in range(bmax, len(live), bmax)]
            return _Head(q.model, batch, first_s, rest)
        deadlines = q.deadline_s
        live_idx = None
        if self.shed != "off":
            hopeless = deadlines < cut_s
            if hopeless.any():
                stale = hopeless & (deadlines < stale_s)
                drop.extend(q[int(i)] for i in np.flatnonzero(stale))
                keep = np.flatnonzero(hopeless & ~stale)
                if keep.size and self._answered_calls:  # as _unwaited, on indices
                    mates = np.array(self._mates(q[int(i)] for i in keep), dtype=bool)
                    drop.extend(q[int(i)] for i in keep[mates])
                    keep = keep[~mates]
                if keep.size:
                    key = -deadlines[keep] if self.salvage_newest else deadlines[keep]
                    if keep.size > bmax:  # only the first Bmax can run next: skip sorting the rest
                        part = np.argpartition(key, bmax - 1)[:bmax]
                        keep, key = keep[part], key[part]
                    keep = keep[np.argsort(key, kind="stable")]
                    late.append([q[int(i)] for i in keep])
                live_idx = np.flatnonzero(~hopeless)
                if live_idx.size == 0:
                    return None
        d = deadlines if live_idx is None else deadlines[live_idx]
        order = np.argsort(d, kind="stable") if self.edf_batches else np.arange(d.size)
        take = order[:bmax]
        idx = take if live_idx is None else live_idx[take]
        reqs = list(q)
        batch = tuple(reqs[i] for i in idx.tolist())
        first_s = float(d[take].min())
        rest = []
        if d.size > bmax:
            n = min(d.size, bmax * (MAX_CHUNKS + 1))
            if self.edf_batches:  # later batches in deadline order: each one's earliest is its first
                later = d[order[bmax:n]]
                full = (later.size - 1) // bmax
                rest = list(zip(later[::bmax].tolist(), [bmax] * full + [later.size - bmax * full]))
            else:
                rest = [(float(d[k:k + bmax].min()), min(bmax, n - k)) for k in range(bmax, n, bmax)]
        return _Head(q.model, batch, first_s, rest)

    def _lookahead(self, now_s: float, heads: list[_Head], t: _Tables, queues: Queues) -> EdfSlack | None:
        """The EDF test over what each candidate leaves behind (None with ``lookahead=False``).

        Per model (as in ``heads``, then served models with an empty queue), its pending batches at
        the shallowest allowed exit, without ([waiting]) or with ([leftover]) its candidate batch run
        now. A fresh arrival with the model's shortest recent deadline (``reserve``) rides in the
        first batch with room, else alone: a slot cannot be interrupted for it."""
        if not self.lookahead:
            return None
        bmax = self.bmax
        waiting, leftover = [], []
        seen = set()
        for h in heads:
            seen.add(h.model)
            row = t.chain[h.model][t.allowed[h.model][0]]
            arrival_s = now_s + self._shortest_slo_ms(h.model, h) / 1000.0 if self.reserve else INF
            leftover.append(_with_arrival(h.rest, arrival_s, row, bmax))
            waiting.append(_with_arrival([(h.first_s, len(h.batch)), *h.rest], arrival_s, row, bmax))
        if self.reserve:
            for m in queues:
                if m not in seen and t.allowed[m] and m in self._shortest_ms:
                    row = t.chain[m][t.allowed[m][0]]
                    waiting.append([(now_s + self._shortest_ms[m] / 1000.0, row[1])])
                    leftover.append([])
        return EdfSlack(now_s, waiting, leftover, t.spread)

    def _shortest_slo_ms(self, model: str, head: _Head) -> float:
        """The shortest relative deadline this model's requests recently carried (incl. its most urgent)."""
        shortest = self._shortest_ms.get(model)
        if shortest is None:
            return min(r.slo_ms for r in head.batch)
        return min(shortest, head.batch[0].slo_ms)

    # -- exit-boundary preemption ----------------------------------------------------------

    @property
    def preemptive(self) -> bool:
        return self.preemption

    def preempt(self, now_s: float, plan: Plan, exit_done: str, queues: Queues, profile: Profile) -> bool:
        """Stop the running batch at ``exit_done`` when requests that arrived during the slot make the rest
        of it doom queued work that stopping now saves, and the requests saved are worth more than the
        accuracy the batch gives up (see ``_stop_value``). Only at an allowed exit (never a dominated one
        or one below the floor); the stopped batch keeps its deadlines, it finishes earlier."""
        if not self.preemption or plan.model is None:
            return False
        t = self._prepare(profile)
        m = plan.model
        k = t.exits[m].index(exit_done)
        if k not in t.allowed[m]:
            return False
        if not any(q and q[-1].arrival_s > self._decided_s for q in queues.values()):
            return False  # nothing new since the decision, whose look-ahead protected everything queued
        cap, b = t.exits[m].index(plan.exit), plan.batch_size
        acc = profile.model(m).accuracy
        lost = b * (acc[plan.exit] - acc[exit_done])
        if self._stop_value(now_s, t, queues, profile, m, k, cap, b) <= lost:
            return False
        self._preempted_slots += 1
        self._preempted_lost += lost
        return True

    def _stop_value(self, now_s: float, t: _Tables, queues: Queues, profile: Profile, m: str, k: int,
                    cap: int, b: int) -> float:
        """Accuracy the queued requests gain if the slot stops now rather than running to its cap: each one
        that then meets its deadline in an EDF schedule of every queue at the shallowest allowed exits (the
        look-ahead's test), but not after the rest of the slot, counts its model's shallowest accuracy.
        The rest of the slot is the cap's safe time in the share the executors split it by."""
        share = min(t.expected[m][k][b] / t.expected[m][cap][b], 1.0)
        remaining_ms = t.safe[m][cap][b] * (1.0 - share)
        pending: list[tuple[float, float, int, float]] = []  # (deadline_s, duration ms, requests, accuracy)
        for q in queues.values():
            if not q or not t.allowed[q.model]:
                continue
            head = self._head(now_s, q, t, [], [])
            if head is None:
                continue
            lo = t.allowed[q.model][0]
            row = t.chain[q.model][lo]
            value = profile.model(q.model).accuracy[t.exits[q.model][lo]]
            for d_s, size in [(head.first_s, len(head.batch)), *head.rest]:
                pending.append((d_s, row[size], size, value))
        pending.sort()
        base_ms = now_s * 1000.0
        gained = 0.0
        busy_ms = square_ms2 = 0.0
        for d_s, dur_ms, size, value in pending:
            busy_ms += dur_ms
            square_ms2 += dur_ms * dur_ms
            room_ms = d_s * 1000.0 - base_ms - busy_ms - t.spread * math.sqrt(square_ms2)
            if 0.0 <= room_ms < remaining_ms:
                gained += size * value
        return gained

    # -- learning --------------------------------------------------------------------------

    def observe(self, plan: Plan, slot: SlotResult) -> None:
        if plan.model is None or not plan.requests:
            return
        for r in plan.requests:
            if r.call is not None and r.call not in self._answered_calls:
                if len(self._answered_order) == self._answered_order.maxlen:
                    self._answered_calls.discard(self._answered_order[0])
                self._answered_order.append(r.call)
                self._answered_calls.add(r.call)
        recent = self._recent_slo_ms.get(plan.model)
        if recent is None:
            recent = self._recent_slo_ms[plan.model] = deque(maxlen=64)
        recent.append(min(r.slo_ms for r in plan.requests))
        self._shortest_ms[plan.model] = min(recent)
        t = self._tables
        if t is None:
            return
        if slot.preempted:
            # Stopped at an exit boundary: no sample of the cap's latency (nor of the exit reached, whose
            # time the executor only apportioned); the budget counts the batch at the exit it got.
            if self._budget is not None:
                self._budget.observe(plan, t.exits[plan.model].index(slot.exits[0]))
            return
        e = t.exits[plan.model].index(plan.exit)
        if self._correction is not None:
            if all(x == plan.exit for x in slot.exits):
                self._correction.observe(plan.model, e, plan.batch_size, slot.slot_ms, plan.predicted_ms)
            else:
                # Confidence exits let some samples leave before the cap: that slot is no sample of the
                # cap's latency, and learning from it would plan the next cap below its upper bound.
                self._early_slots += 1
                self._early_saved_ms += self._correction.expected_ms(plan.model, e, plan.batch_size) - slot.slot_ms
        if self._budget is not None:
            self._budget.observe(plan, e)

    @property
    def correction(self) -> LatencyCorrection | None:
        """The online latency correction (None with ``adaptive=False`` or before the first decision)."""
        return self._correction

    def stats(self) -> dict:
        """Prediction error and the current margin, for reports and metrics."""
        out: dict = {}
        if self._correction is not None:
            out["prediction"] = self._correction.error_stats()
            out["confidence_exits"] = {"slots": self._early_slots, "saved_ms": self._early_saved_ms}
        if self.preemption:
            out["preemption"] = {"slots": self._preempted_slots, "accuracy_lost": self._preempted_lost}
        if self._budget is not None:
            out["budget"] = self._budget.describe()
        return out


def _with_arrival(batches: list[tuple[float, int]], arrival_deadline_s: float, row: list[float],
                  bmax: int) -> list[tuple[float, float]]:
    """(deadline_s, duration_ms) of ``batches`` plus, unless its deadline is inf, one fresh arrival."""
    out = []
    pending = arrival_deadline_s < INF
    for deadline_s, size in batches:
        if pending and size < bmax:
            out.append((min(deadline_s, arrival_deadline_s), row[size + 1]))
            pending = False
        else:
            out.append((deadline_s, row[size]))
    if pending:
        out.append((arrival_deadline_s, row[1]))
    return out


def _hopeless_before_s(t: _Tables, model: str, now_s: float) -> float:
    """A ``model`` request due before this cannot meet its deadline even alone at the shallowest allowed exit
    started now: the policy's one cut between live and hopeless (admission, shedding, displacement, backlog)."""
    return now_s + t.expected[model][t.allowed[model][0]][1] / 1000.0


def _deadline(r: Request) -> float:
    return r.deadline_s
