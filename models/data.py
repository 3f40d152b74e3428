"""Bundled real datasets only, with seeded train/validation/test splits.

- ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 grey images, values 0..16), shape (1, 8, 8).
- ``breast_cancer`` / ``wine``: scikit-learn's tabular sets, as one-channel signals (1, features).
- ``mnist1d``: the ``mnist1d`` package's ``make_dataset()`` (generated locally, 5,000 signals of
  length 40), shape (1, 40). Its ``get_dataset()`` downloads and is never called.

Nothing here touches the network. Splits are stratified by class and depend only on the seed.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np

DATASETS: tuple[str, ...] = ("digits", "mnist1d", "breast_cancer", "wine")
TABULAR: tuple[str, ...] = ("breast_cancer", "wine")

# Fractions of each class that go to validation and test; the rest trains.
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15


@dataclass(frozen=True, slots=True)
class Split:
    x: np.ndarray  # float32, (n, *input_shape), raw values as the dataset has them
    y: np.ndarray  # int64, (n,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    train: Split
    val: Split
    test: Split

    @property
    def tabular(self) -> bool:
        """Features of different units (normalise each one), rather than an image or a signal."""
        return self.name in TABULAR


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets are {list(DATASETS)}")
    return name


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """The dataset ``name`` split into train/validation/test by ``seed`` (stratified).

    Cached per (name, seed); the arrays are read-only, so copy before changing them.
    """
    return _split(check_dataset(name), int(seed))


@functools.lru_cache(maxsize=16)
def _split(name: str, seed: int) -> Dataset:
    x, y, shape = _raw(name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _stable_id(name)]))
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val, n_test = round(len(idx) * VAL_FRACTION), round(len(idx) * TEST_FRACTION)
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val:n_val + n_test])
        parts["train"].append(idx[n_val + n_test:])
    splits = {}
    for key, chunks in parts.items():
        idx = rng.permutation(np.concatenate(chunks))
        xs, ys = x[idx], y[idx]
        xs.setflags(write=False)
        ys.setflags(write=False)
        splits[key] = Split(xs, ys)
    return Dataset(name, shape, int(y.max()) + 1, splits["train"], splits["val"], splits["test"])


def sample(name: str, index: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """One test-split sample and its label, by index modulo the split size (for replay inputs)."""
    test = load_dataset(name, seed).test
    i = int(index) % len(test)
    return test.x[i], int(test.y[i])


@functools.cache
def _raw(name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    if name == "mnist1d":
        x, y = _mnist1d()
    else:
        from sklearn import datasets

        loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
                  "wine": datasets.load_wine}[name]
        bunch = loader()
        x, y = bunch.data, bunch.target
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    shape = (1, 8, 8) if name == "digits" else (1, x.shape[1])
    x = x.reshape(len(x), *shape)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y, shape


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds numpy's and Python's global generators; keep the caller's state intact.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())  # generated locally; get_dataset() would download
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def _stable_id(name: str) -> int:
    return sum((i + 1) * ord(ch) for i, ch in enumerate(name))
