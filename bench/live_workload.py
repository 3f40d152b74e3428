"""The bundled live workload: a seeded, bursty trace over the demo zoo, shared by the demo and ``bench live``.

MMPP on/off bursts (``workloads.generators``, one burst path for every model) at a mean rate the
2-core box's HTTP path sustains, with bursts at ``BURST_FACTOR`` x that rate that queue requests
in the worker, so the scheduler's choices show; the models' shares follow their cost (light 3 :
medium 2 : heavy 1) and every request draws one of two deadline classes. The committed copy
``bench/traces/live_bursty.csv`` is what ``edgeserving demo`` and ``bench live`` replay by default;
``generate_rows()`` regenerates it bit for bit (``python -m bench.live_workload`` rewrites it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRACE_PATH = Path(__file__).resolve().parent / "traces" / "live_bursty.csv"
PROCESS = "mmpp"
MEAN_RATE_RPS = 30.0  # long-run mean over all models
BURST_FACTOR = 3.0  # on-period rate / mean rate
ON_FRACTION = 0.2  # share of time in bursts
MEAN_ON_S = 1.5  # mean burst length
WEIGHTS = {"cnn1d_mnist1d": 3.0, "vit_digits": 2.0, "resnet_digits": 1.0}
DEADLINES = ((40.0, 0.5), (100.0, 0.5))  # (deadline ms, share), judged client-side: proxy included
SECONDS = 60.0
SEED = 2026


def describe() -> str:
    mix = ", ".join(f"{d:g} ms:{p:g}" for d, p in DEADLINES)
    return (f"{PROCESS} bursts ({BURST_FACTOR:g}x for {100 * ON_FRACTION:g}% of the time, mean burst {MEAN_ON_S:g} s), "
            f"mean {MEAN_RATE_RPS:g} req/s, models {':'.join(f'{w:g}' for w in WEIGHTS.values())} "
            f"({', '.join(WEIGHTS)}), deadlines {mix}, {SECONDS:g} s, seed {SEED}")


def generate_rows(rate_rps: float = MEAN_RATE_RPS, seconds: float = SECONDS, seed: int = SEED) -> list:
    """The bundled trace's rows (or the same shape at another rate, length or seed)."""
    from workloads.generators import generate

    total = sum(WEIGHTS.values())
    rates = {m: rate_rps * w / total for m, w in WEIGHTS.items()}
    return generate(PROCESS, rates, list(DEADLINES), seconds, np.random.default_rng(seed),
                    burst_factor=BURST_FACTOR, on_fraction=ON_FRACTION, mean_on_s=MEAN_ON_S)


def load_rows(path: str | Path | None = None) -> list:
    """A trace file's rows; the bundled trace by default (regenerated when its file is missing)."""
    from workloads.trace import read_trace

    if path is None and not TRACE_PATH.exists():
        return generate_rows()
    return read_trace(path or TRACE_PATH)


if __name__ == "__main__":
    from workloads.trace import write_trace

    TRACE_PATH.parent.mkdir(parents=True, exist_ok=True)
    n = write_trace(TRACE_PATH, generate_rows())
    print(f"wrote {n} rows to {TRACE_PATH}: {describe()}")
