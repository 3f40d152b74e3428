"""The committed demo zoo: it loads, accuracy rises with depth, its profile fits; and the cache fallback."""

from __future__ import annotations

import itertools
import shutil

import pytest

import models.build_zoo as build_zoo
import models.zoo as zoo
from models.build_zoo import demo_zoo_problem
from models.checkpoint import load_checkpoint
from models.zoo import ARTIFACT_DIR, DEMO_MODELS, DEMO_PROFILE, demo_zoo_paths, ensure_demo_zoo
from scheduler.profile import Profile


def test_committed_demo_zoo_loads_and_is_small():
    assert demo_zoo_problem(demo_zoo_paths()) is None
    total = sum((ARTIFACT_DIR / f"{n}{ext}").stat().st_size for n in DEMO_MODELS for ext in (".pt", ".json"))
    assert total < 2 * 1024 * 1024
    families = {load_checkpoint(ARTIFACT_DIR / f"{n}.json")[1].family for n in DEMO_MODELS}
    assert families == {"resnet", "vit", "cnn1d"}


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_demo_accuracy_rises_with_depth_and_beats_chance(name):
    _, meta = load_checkpoint(ARTIFACT_DIR / f"{name}.json")
    val = [meta.val_accuracy[e] for e in meta.exits]
    assert all(a < b for a, b in itertools.pairwise(val)), f"{name}: validation accuracy per exit {val}"
    assert meta.accuracy[meta.exits[-1]] > 0.9
    assert meta.threshold_list("max_softmax") and len(meta.threshold_list("entropy")) == len(meta.exits) - 1


def test_demo_profile_fits_the_checkpoints_and_costs_differ():
    profile = Profile.load(DEMO_PROFILE)
    assert profile.extra["threads"] == 1
    finals = []
    for name in DEMO_MODELS:
        _, meta = load_checkpoint(ARTIFACT_DIR / f"{name}.json")
        mp = profile.model(name)
        assert mp.exits == meta.exits and mp.accuracy == meta.accuracy
        assert mp.batch_sizes == tuple(range(1, 11))
        # Summed over batch sizes, so one noisy measurement cannot flip an order.
        cost = [sum(profile.latency_ms(name, e, b, "mean") for b in mp.batch_sizes) for e in mp.exits]
        assert all(a < b for a, b in itertools.pairwise(cost)), f"{name}: deeper exits must cost more: {cost}"
        final = mp.exits[-1]
        assert profile.latency_ms(name, final, 10, "mean") > profile.latency_ms(name, final, 1, "mean")
        finals.append(cost[-1])
    assert finals == sorted(finals)  # DEMO_MODELS is ordered light, medium, heavy


def test_ensure_demo_zoo_prefers_committed_then_cache(tmp_path, monkeypatch):
    assert ensure_demo_zoo(cache=tmp_path / "unused").source == "committed"
    # With the committed copy gone, a cached copy is used as is.
    cache = tmp_path / "cache"
    cache.mkdir()
    for n in DEMO_MODELS:
        for ext in (".pt", ".json"):
            shutil.copy(ARTIFACT_DIR / f"{n}{ext}", cache / f"{n}{ext}")
    shutil.copy(DEMO_PROFILE, cache / zoo.DEMO_PROFILE_NAME)
    monkeypatch.setattr(zoo, "ARTIFACT_DIR", tmp_path / "gone")
    found = ensure_demo_zoo(cache=cache)
    assert found.source == "cache" and found.checkpoint("vit_digits") == cache / "vit_digits.json"
    with pytest.raises(ValueError, match="unknown demo model"):
        found.checkpoint("resnet50")


def test_ensure_demo_zoo_trains_and_profiles_when_nothing_usable_exists(tmp_path, monkeypatch):
    # A one-model stand-in for the demo zoo keeps this fast; the code path is the real one.
    monkeypatch.setattr(zoo, "ARTIFACT_DIR", tmp_path / "gone")
    monkeypatch.setattr(zoo, "DEMO_MODELS", ("cnn1d_breast_cancer",))
    monkeypatch.setattr(build_zoo, "DEMO_BATCH_SIZES", (1, 2))
    monkeypatch.setattr(build_zoo, "DEMO_REPEATS", 3)
    monkeypatch.setattr(build_zoo, "DEMO_WARMUP", 1)
    cache = tmp_path / "cache"
    (cache).mkdir()
    (cache / "cnn1d_breast_cancer.json").write_text("{broken")
    messages: list[str] = []
    made = ensure_demo_zoo(cache=cache, log=messages.append)
    assert made.source == "trained" and made.models == ("cnn1d_breast_cancer",)
    assert any("corrupt checkpoint metadata" in m for m in messages)  # it said why it retrained
    assert Profile.load(made.profile_path).model("cnn1d_breast_cancer").batch_sizes == (1, 2)
    assert demo_zoo_problem(made) is None
    assert ensure_demo_zoo(cache=cache).source == "cache"  # the next call reuses it
