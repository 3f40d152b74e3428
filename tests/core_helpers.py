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
