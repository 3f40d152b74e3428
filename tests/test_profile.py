import json

import pytest

from scheduler.paths import seed_profile_path
from scheduler.profile import Profile, ProfileError
from tests.core_helpers import TWO_MODELS

SEED = seed_profile_path()
needs_seed = pytest.mark.skipif(not SEED.exists(), reason=f"seed profile not found at {SEED}")


@needs_seed
def test_seed_profile_loads_with_lookups():
    p = Profile.load(SEED)
    assert p.model_names == ("resnet50", "resnet101", "resnet152")
    assert p.model("resnet50").exits == ("layer1", "layer2", "layer3", "final")
    assert p.latency_ms("resnet152", "final", 5, "mean") == pytest.approx(13.53)
    assert p.latency_ms("resnet152", "final", 5, "p95") > p.latency_ms("resnet152", "final", 5, "p50")
    assert p.accuracy("resnet50", "layer3") == pytest.approx(0.8071)


def test_batch_is_clamped_to_the_profiled_range():
    assert TWO_MODELS.latency_ms("A", "e2", 0) == 4.0
    assert TWO_MODELS.latency_ms("A", "e2", 1) == 4.0
    assert TWO_MODELS.latency_ms("A", "e2", 4) == 10.0
    assert TWO_MODELS.latency_ms("A", "e2", 99) == 10.0


def test_missing_batch_sizes_are_interpolated():
    p = Profile.from_latencies("gappy", {"M": {"x": {1: 2.0, 4: 8.0}}})
    assert p.latency_ms("M", "x", 2) == pytest.approx(4.0)
    assert p.latency_ms("M", "x", 3) == pytest.approx(6.0)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'C'.*\['A', 'B'\]"):
        TWO_MODELS.latency_ms("C", "e1", 1)
    with pytest.raises(ValueError, match=r"no exit 'e3'.*\['e1', 'e2'\]"):
        TWO_MODELS.accuracy("A", "e3")
    with pytest.raises(ValueError, match="unknown quantile 'p42'"):
        TWO_MODELS.table("p42")


def _write(tmp_path, data) -> str:
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.pop("models"), "models: missing required key"),
    (lambda d: d["models"]["A"].pop("exits"), "models.A.exits: missing required key"),
    (lambda d: d["models"]["A"]["accuracy"].update(e1=1.5), r"models.A.accuracy.e1: expected a number in \[0, 1\]"),
    (lambda d: d["models"]["A"]["latency_ms"]["e1"]["1"].pop("p95"),
     r"models.A.latency_ms.e1.1.p95: expected a positive"),
    (lambda d: d["models"]["A"]["latency_ms"]["e1"]["1"].update(p99=0.5), "quantiles must be non-decreasing"),
    (lambda d: d["models"]["A"]["latency_ms"]["e1"].update({"x": {}}), "batch size must be a positive integer"),
    (lambda d: d["models"]["A"]["latency_ms"]["e2"].pop("4"), "every exit must be profiled at the same batch sizes"),
])
def test_bad_profiles_name_the_file_and_the_key(tmp_path, mutate, message):
    data = TWO_MODELS.to_dict()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError, match=message) as info:
        Profile.load(path)
    assert path in str(info.value)


def test_unreadable_and_non_json_profiles(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profile"):
        Profile.load(tmp_path / "absent.json")
    path = _write(tmp_path, "{not json")
    with pytest.raises(ProfileError, match=r"bad.json: not valid JSON \(line 1"):
        Profile.load(path)


def test_round_trip_keeps_extra_keys():
    data = TWO_MODELS.to_dict()
    data["threads"] = 1
    again = Profile.from_dict(data)
    assert again.extra["threads"] == 1
    assert again.to_dict() == data
