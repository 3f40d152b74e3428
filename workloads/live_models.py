"""What a live server serves, from ``GET /v1/models``: input shapes, and a profile for summaries.

The summary of a live replay needs each model's exits (in order) and their accuracy; the
server's ``/v1/models`` carries both, plus the p95 latency per exit and batch, which becomes a
profile whose quantiles all equal that p95 (only exits and accuracy are used for summaries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduler.profile import QUANTILES, Profile


class ServerContractError(ValueError):
    """The server's answer does not follow the HTTP API contract."""


@dataclass(frozen=True, slots=True)
class LiveModels:
    shapes: dict[str, tuple[int, ...]]  # model -> input shape of one sample
    profile: Profile
    policy: str | None  # the server's policy, where /v1/models reports one


def parse_models(body: Any, url: str) -> LiveModels:
    """Validate a ``GET /v1/models`` body; errors name the field that breaks the contract."""
    where = f"GET {url}/v1/models"
    if not isinstance(body, dict) or not isinstance(body.get("models"), list) or not body["models"]:
        raise ServerContractError(f"{where}: expected {{\"models\": [...]}} with at least one model")
    shapes: dict[str, tuple[int, ...]] = {}
    spec: dict[str, Any] = {}
    for i, m in enumerate(body["models"]):
        name = m.get("name") if isinstance(m, dict) else None
        if not isinstance(name, str) or not name:
            raise ServerContractError(f"{where}: models[{i}] has no name")
        shape = m.get("input_shape")
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
            raise ServerContractError(f"{where}: model {name!r}: input_shape {shape!r} is not a list of positive ints")
        shapes[name] = tuple(shape)
        exits = m.get("exits")
        if not (isinstance(exits, list) and exits and all(isinstance(e, str) for e in exits)):
            raise ServerContractError(f"{where}: model {name!r}: exits {exits!r} is not a list of names")
        latency = m.get("latency_ms")
        if not isinstance(latency, dict):
            raise ServerContractError(f"{where}: model {name!r}: latency_ms is missing "
                                      f"(expected exit -> batch -> p95 ms)")
        spec[name] = {
            "exits": exits,
            "accuracy": m.get("accuracy"),
            "latency_ms": {e: _latency(where, name, e, latency.get(e)) for e in exits},
        }
    try:
        profile = Profile.from_dict({"name": f"live {url}", "models": spec}, source=where)
    except ValueError as exc:
        raise ServerContractError(str(exc)) from None
    policy = body.get("policy")
    return LiveModels(shapes, profile, policy if isinstance(policy, str) else None)


def _latency(where: str, model: str, exit: str, per_batch: Any) -> dict[str, dict[str, float]]:
    if not isinstance(per_batch, dict) or not per_batch:
        raise ServerContractError(f"{where}: model {model!r}: latency_ms[{exit!r}] is missing or empty")
    out = {}
    for batch, p95 in per_batch.items():
        if not isinstance(p95, int | float) or isinstance(p95, bool):
            raise ServerContractError(f"{where}: model {model!r}: latency_ms[{exit!r}][{batch!r}] = {p95!r} "
                                      f"is not a number")
        out[str(batch)] = {q: float(p95) for q in QUANTILES}
    return out
