"""Small deterministic profiles and request builders shared by the core's unit tests."""

from __future__ import annotations

from scheduler.profile import Profile
from scheduler.queues import RequestQueue
from scheduler.types import Request

# Two models, two exits, batches 1-4; every quantile equals the mean, so slot times are exact.
TWO_MODELS = Profile.from_latencies("two-models", {
    "A": {"e1": {1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}, "e2": {1: 4.0, 2: 6.0, 3: 8.0, 4: 10.0}},
    "B": {"e1": {1: 3.0, 2: 4.0, 3: 5.0, 4: 6.0}, "e2": {1: 8.0, 2: 10.0, 3: 12.0, 4: 14.0}},
}, accuracy={"A": {"e1": 0.6, "e2": 0.8}, "B": {"e1": 0.5, "e2": 0.9}})


def req(rid: str, model: str, arrival_s: float, slo_ms: float) -> Request:
    return Request(rid, model, arrival_s, arrival_s + slo_ms / 1000.0)


def queues(profile: Profile, *requests: Request) -> dict[str, RequestQueue]:
    qs = {m: RequestQueue(m) for m in profile.model_names}
    for r in requests:
        qs[r.model].push(r)
    return qs


def draw_requests(draw, max_n: int, max_gap_s: float) -> list[Request]:
    """A hypothesis draw of 1..max_n requests to models A and B, sorted arrivals, mixed deadline classes."""
    from hypothesis import strategies as st

    n = draw(st.integers(1, max_n))
    gaps = draw(st.lists(st.floats(0.0, max_gap_s), min_size=n, max_size=n))
    models = draw(st.lists(st.sampled_from(["A", "B"]), min_size=n, max_size=n))
    slos = draw(st.lists(st.sampled_from([1.0, 5.0, 20.0, 50.0, 200.0]), min_size=n, max_size=n))
    t, rs = 0.0, []
    for i in range(n):
        t += gaps[i]
        rs.append(Request(str(i), models[i], t, t + slos[i] / 1000.0))
    return rs
