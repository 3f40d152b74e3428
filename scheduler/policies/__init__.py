"""Scheduling policies, one per file, registered by name."""

from __future__ import annotations

from scheduler.policies.all_early import AllEarlyPolicy
from scheduler.policies.all_final import AllFinalPolicy
from scheduler.policies.base import Policy
from scheduler.policies.clockwork import ClockworkPolicy
from scheduler.policies.early_exit import EarlyExitPolicy
from scheduler.policies.edf_exit import EdfExitPolicy
from scheduler.policies.edgeserving import EdgeServingPolicy
from scheduler.policies.lookahead import LookaheadPolicy
from scheduler.policies.round_robin import RoundRobinPolicy
from scheduler.policies.spec import parse_policy_spec
from scheduler.policies.symphony import SymphonyPolicy

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        EdgeServingPolicy,
        AllFinalPolicy,
        AllEarlyPolicy,
        RoundRobinPolicy,
        EarlyExitPolicy,
        SymphonyPolicy,
        ClockworkPolicy,
        EdfExitPolicy,
        LookaheadPolicy,
    )
}

# The policy used wherever none is named (simulate, replay --simulate, serve, ray_config.yaml).
DEFAULT_POLICY = "lookahead"
REFERENCE_POLICY = "edgeserving"


def policy_names() -> list[str]:
    return list(POLICIES)


def make_policy(spec: str, **options) -> Policy:
    """A fresh policy instance by registry name or spec (``name:key=value...``, ``scheduler.policies.spec``);
    ``options`` (bmax, quantile, ...) go to its constructor, the spec's own options over them."""
    name, own = parse_policy_spec(spec)
    cls = POLICIES.get(name)
    if cls is None:
        raise ValueError(f"unknown policy {name!r}; known policies are {', '.join(POLICIES)}")
    try:
        policy = cls(**{**options, **own})
    except TypeError as exc:  # e.g. an option the policy does not take: name the policy and the options
        raise ValueError(f"policy {name!r} with options {sorted({**options, **own})}: {exc}") from None
    if own:
        policy.label = spec.strip()
    return policy


__all__ = ["DEFAULT_POLICY", "POLICIES", "REFERENCE_POLICY", "Policy", "make_policy", "parse_policy_spec",
           "policy_names"]
