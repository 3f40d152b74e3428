"""Input validation at the edge: good inputs become float32 tensors, bad ones name the expected shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.checkpoint import ModelMeta
from models.validate import InputError, validate_input

META = ModelMeta(name="digits_model", family="resnet", arch={}, input_shape=(1, 2, 3), num_classes=10,
                 exits=("layer1", "final"), accuracy={"layer1": 0.5, "final": 0.9})
GOOD = [[[0, 1, 2], [3.5, 4, 5]]]
GOOD_INT = [[[0, 1, 2], [3, 4, 5]]]
EXPECTED = r"expected one float32 sample of shape \[1, 2, 3\] for model 'digits_model'"


@pytest.mark.parametrize("value", [GOOD, GOOD_INT, np.array(GOOD, dtype=np.float64), np.array(GOOD_INT, dtype=np.int64),
                                   torch.tensor(GOOD, dtype=torch.float16)])
def test_good_inputs_become_float32_tensors(value):
    t = validate_input(META, value)
    assert t.dtype == torch.float32 and t.shape == (1, 2, 3)
    assert t.flatten().tolist() == np.asarray(value, dtype=np.float32).flatten().tolist()


@pytest.mark.parametrize("value, problem", [
    ([[0, 1, 2], [3, 4, 5]], r"wrong input shape \[2, 3\]"),
    ([[[0, 1, 2, 3], [3, 4, 5, 6]]], r"wrong input shape \[1, 2, 4\]"),
    (np.zeros((2, 1, 2, 3)), r"wrong input shape \[2, 1, 2, 3\]"),
    ([[[0, 1, 2], [3, 4]]], "ragged"),
    ([[[0, 1, "2"], [3, 4, 5]]], "non-number '2'"),
    ([[[0, 1, True], [3, 4, 5]]], "non-number True"),
    ([[[0, 1, None], [3, 4, 5]]], "non-number None"),
    ("0,1,2", "must be a nested list of numbers, got str"),
    ({"a": 1}, "got dict"),
    (np.array(GOOD, dtype=np.complex64), "wrong input dtype complex64"),
    (np.array(GOOD, dtype=bool), "wrong input dtype bool"),
    (np.array([[["a", "b", "c"], ["d", "e", "f"]]]), "wrong input dtype"),
    (torch.zeros(1, 2, 3, dtype=torch.bool), "wrong input dtype torch.bool"),
    ([[[0, 1, math.nan], [3, 4, 5]]], "NaN"),
    ([[[0, 1, math.inf], [3, 4, 5]]], "infinite"),
    ([[[0, 1, 1e300], [3, 4, 5]]], "beyond float32 range"),
    ([[[0, 1, 10**400], [3, 4, 5]]], "non-numbers|ragged"),
])
def test_bad_inputs_name_the_expected_shape(value, problem):
    with pytest.raises(InputError, match=problem) as info:
        validate_input(META, value)
    assert isinstance(info.value, ValueError)
    assert "expected one float32 sample of shape [1, 2, 3] for model 'digits_model'" in str(info.value)


def test_a_plain_shape_works_without_metadata():
    assert validate_input((3,), [1, 2, 3]).tolist() == [1, 2, 3]
    with pytest.raises(InputError, match=r"expected one float32 sample of shape \[3\]$"):
        validate_input((3,), [1, 2])
