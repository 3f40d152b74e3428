"""Which exits a model may use: the accuracy/latency Pareto front, cut by an optional accuracy floor.

An exit is *dominated* when another exit of the same model is no slower at every batch size
1..Bmax and no less accurate, and strictly better in one of the two (an exact tie keeps the
shallower exit). A dominated exit is never worth running: in the seed profile every model's
``final`` is slower than its ``layer3`` and no more accurate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scheduler.profile import Profile


def pareto_exits(accuracy: Sequence[float], rows: Sequence[Sequence[float]], bmax: int) -> tuple[int, ...]:
    """Indices of the non-dominated exits, shallowest first.

    ``accuracy[e]`` is exit e's accuracy; ``rows[e][b]`` its latency at batch b (any quantile: the
    comparison is made at every batch size 1..``bmax``).
    """
    n = len(accuracy)
    keep = []
    for e in range(n):
        dominated = False
        for o in range(n):
            if o == e:
                continue
            no_slower = all(rows[o][b] <= rows[e][b] for b in range(1, bmax + 1))
            no_worse = accuracy[o] >= accuracy[e]
            if not (no_slower and no_worse):
                continue
            strictly = accuracy[o] > accuracy[e] or any(rows[o][b] < rows[e][b] for b in range(1, bmax + 1))
            if strictly or o < e:  # an exact tie keeps the shallower exit
                dominated = True
                break
        if not dominated:
            keep.append(e)
    return tuple(keep)


def allowed_exits(profile: Profile, bmax: int, floors: Mapping[str, float] | None = None,
                  accuracy_aware: bool = True, quantile: str = "mean") -> dict[str, tuple[int, ...]]:
    """Per model, the exit indices a policy may run, shallowest first.

    With ``accuracy_aware`` the Pareto front at ``quantile``, else every exit. ``floors`` removes
    exits below a model's accuracy floor; a model whose floor no exit reaches gets an empty tuple
    (its requests are then refused at admission).
    """
    floors = floors or {}
    for m in floors:
        profile.model(m)  # an unknown model in the floors is a configuration error
    rows = profile.table(quantile).rows
    out: dict[str, tuple[int, ...]] = {}
    for m, mp in profile.models.items():
        acc = [mp.accuracy[e] for e in mp.exits]
        exits = pareto_exits(acc, rows[m], bmax) if accuracy_aware else tuple(range(len(acc)))
        floor = floors.get(m)
        if floor is not None:
            exits = tuple(e for e in exits if acc[e] >= floor)
        out[m] = exits
    return out
