"""Deterministic request bodies for live replays.

Each request's input is standard-normal float32 noise shaped like the model's ``input_shape``,
drawn from ``numpy.random.default_rng(input_seed)`` (the trace's ``input_seed``, else the
request's index), rounded to 4 decimals to keep bodies small. The same trace therefore sends the
same bytes on every replay, whichever server it targets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from workloads.trace import TraceRow

INPUT_DECIMALS = 4


def make_inputs(shape: Sequence[int], seed: int) -> list:
    """One sample shaped ``shape``, as nested lists of floats."""
    x = np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)
    return np.round(x.astype(np.float64), INPUT_DECIMALS).tolist()


def row_seed(row: TraceRow, index: int) -> int:
    """The input seed of a trace row: its ``input_seed``, else its index in the trace."""
    return row.input_seed if row.input_seed is not None else index


def infer_body(row: TraceRow, index: int, shape: Sequence[int]) -> bytes:
    """The ``POST /v1/infer`` JSON body for one trace row."""
    body = {"model": row.model, "inputs": make_inputs(shape, row_seed(row, index)), "deadline_ms": row.deadline_ms,
            "request_id": row.request_id}
    return json.dumps(body, separators=(",", ":")).encode()


def sample_seed(row: TraceRow, index: int, sample: int, samples: int) -> int:
    """The input seed of sample ``sample`` of a call of ``samples`` made from one trace row."""
    return row_seed(row, index) * samples + sample


def infer_body_v2(row: TraceRow, index: int, shape: Sequence[int], samples: int) -> bytes:
    """The ``POST /v2/models/{model}/infer`` JSON body for one trace row sent as one call of ``samples``
    samples (shape ``[samples, *shape]``), every one with the row's deadline."""
    data = [make_inputs(shape, sample_seed(row, index, k, samples)) for k in range(samples)]
    body = {"id": row.request_id, "parameters": {"deadline_ms": row.deadline_ms},
            "inputs": [{"name": "input", "shape": [samples, *shape], "datatype": "FP32", "data": data}]}
    return json.dumps(body, separators=(",", ":")).encode()
