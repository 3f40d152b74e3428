"""``all_early``: the longest queue first, a batch of up to Bmax, always the shallowest exit."""

from __future__ import annotations

from scheduler.policies.all_final import AllFinalPolicy


class AllEarlyPolicy(AllFinalPolicy):
    name = "all_early"
    exit_index = 0
