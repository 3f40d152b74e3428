"""Input validation at the edge: one sample (nested list, numpy array or tensor) -> float32 tensor.

Every refusal is an ``InputError`` (a ``ValueError``) whose message names the expected shape, so the
live worker can return it as a 422 body as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from models.checkpoint import ModelMeta


class InputError(ValueError):
    """An input sample has the wrong shape or dtype, or holds NaN/inf."""


def validate_input(meta: ModelMeta | Sequence[int], inputs: Any, model: str | None = None) -> torch.Tensor:
    """``inputs`` as a contiguous float32 CPU tensor shaped ``meta.input_shape`` (one sample), or ``InputError``.

    Accepted: nested lists of ints/floats, numpy arrays and tensors of a real numeric dtype. Refused:
    booleans, strings, complex numbers, ragged lists, a wrong shape, NaN or infinity (also values
    too large for float32).
    """
    shape = tuple(meta.input_shape) if isinstance(meta, ModelMeta) else tuple(int(d) for d in meta)
    name = model or (meta.name if isinstance(meta, ModelMeta) else None)
    expected = f"expected one float32 sample of shape {list(shape)}" + (f" for model {name!r}" if name else "")
    arr = _to_array(inputs, expected)
    if arr.shape != shape:
        raise InputError(f"wrong input shape {list(arr.shape)}; {expected}")
    if arr.dtype.kind not in "iuf":
        raise InputError(f"wrong input dtype {arr.dtype}; {expected} (numbers, not {_kind_name(arr.dtype)})")
    with np.errstate(over="ignore", invalid="ignore"):
        values = arr.astype(np.float32)
    if not np.isfinite(values).all():
        bad = "NaN" if np.isnan(values).any() else "infinite (or beyond float32 range)"
        raise InputError(f"input holds {bad} values; {expected} with finite values")
    return torch.from_numpy(np.ascontiguousarray(values))


def _to_array(inputs: Any, expected: str) -> np.ndarray:
    if isinstance(inputs, torch.Tensor):
        if inputs.dtype.is_complex or inputs.dtype == torch.bool:
            raise InputError(f"wrong input dtype {inputs.dtype}; {expected}")
        return inputs.detach().cpu().numpy()
    if isinstance(inputs, np.ndarray):
        return inputs
    if inputs is None or isinstance(inputs, (str, bytes, dict)):
        raise InputError(f"inputs must be a nested list of numbers, got {type(inputs).__name__}; {expected}")
    _check_scalars(inputs, expected)
    try:
        arr = np.asarray(inputs)
    except ValueError as exc:  # ragged nesting
        raise InputError(f"inputs are a ragged nested list ({exc}); {expected}") from None
    if arr.dtype == object:
        raise InputError(f"inputs are a ragged nested list or hold non-numbers; {expected}")
    return arr


def _check_scalars(inputs: Any, expected: str) -> None:
    """Reject booleans and strings inside nested lists (numpy would silently coerce them)."""
    stack = [inputs]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise InputError(f"inputs hold a non-number {item!r} ({type(item).__name__}); {expected}")


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "O": "objects"}.get(
        dtype.kind, str(dtype))
