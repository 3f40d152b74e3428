"""Training on bundled real data: short runs beat chance at every exit, and runs are reproducible."""

from __future__ import annotations

import numpy as np
import torch

from models.build_zoo import train_spec
from models.checkpoint import load_checkpoint
from models.data import load_dataset, sample
from models.families import build
from models.train import TrainConfig, init_model, train
from models.zoo import ModelSpec

SMALL_RESNET = {"block": "basic", "layers": [1, 1, 1], "widths": [16, 16, 32], "exits": ["layer1", "layer2"]}


def test_splits_are_seeded_stratified_and_disjoint():
    a, b, c = load_dataset("digits", 0), load_dataset("digits", 0), load_dataset("digits", 1)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert (len(a.train), len(a.val), len(a.test)) == (1259, 269, 269)
    assert np.array_equal(a.test.x, b.test.x) and not np.array_equal(a.test.x, c.test.x)
    rows = {arr.tobytes() for arr in np.concatenate([a.train.x, a.val.x, a.test.x])}
    assert len(rows) >= 1790  # (digits has a handful of exact duplicate images)
    assert set(np.bincount(a.val.y)) <= {26, 27, 28}  # every class in proportion
    x, label = sample("digits", 5)
    assert x.shape == (1, 8, 8) and label == int(a.test.y[5])
    wine = load_dataset("wine", 0)
    assert wine.input_shape == (1, 13) and wine.num_classes == 3 and wine.tabular


def test_short_training_on_digits_beats_chance_at_every_exit():
    data = load_dataset("digits", 0)
    model = init_model(lambda: build("resnet", data.input_shape, data.num_classes, SMALL_RESNET), 0)
    result = train(model, data, TrainConfig(epochs=4, lr=5e-3, threads=1), seed=0)
    chance = 1 / data.num_classes
    for e in model.exits:
        assert result.test_accuracy[e] > chance + 0.5, (e, result.test_accuracy)
        assert result.val_accuracy[e] > chance + 0.5, (e, result.val_accuracy)
    assert result.history[-1] < result.history[0]
    assert set(result.thresholds) == {"max_softmax", "entropy"}
    assert set(result.thresholds["max_softmax"]) == {"layer1", "layer2"}  # none for the final exit


def test_training_is_reproducible_and_distillation_changes_it(tmp_path):
    s = ModelSpec("tiny_digits", "resnet", {**SMALL_RESNET, "widths": [8, 8, 8]}, "digits", "test model",
                  train={"epochs": 1, "batch_size": 128, "augment_shift": 1})
    path_a, meta_a, _ = train_spec(s, tmp_path / "a", seed=7, threads=1)
    _path_b, meta_b, _ = train_spec(s, tmp_path / "b", seed=7, threads=1)
    path_c, _, _ = train_spec(s, tmp_path / "c", seed=7, distill=True, threads=1)
    assert meta_a.weights_sha256 == meta_b.weights_sha256  # bit-identical weights
    assert meta_a.accuracy == meta_b.accuracy and meta_a.thresholds == meta_b.thresholds
    assert load_checkpoint(path_c)[1].weights_sha256 != meta_a.weights_sha256
    state_before = torch.random.get_rng_state()
    train_spec(s, tmp_path / "d", seed=8, threads=1)
    assert torch.equal(torch.random.get_rng_state(), state_before)  # the global generator is left alone
    _model, meta = load_checkpoint(path_a)
    assert meta.dataset == "digits" and meta.seed == 7 and meta.extra["splits"]["train"] == 1259
