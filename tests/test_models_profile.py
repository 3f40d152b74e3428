"""``edgeserving profile`` and ``edgeserving train`` end to end: the profile loads with the core's loader."""

from __future__ import annotations

import json

import pytest
import torch

from models.profiler import parse_batch_sizes, quantiles
from models.zoo import ARTIFACT_DIR
from scheduler.cli import main
from scheduler.profile import Profile


def test_profile_of_checkpoints_loads_with_the_core_loader(tmp_path, capsys):
    out = tmp_path / "p.json"
    rc = main(["profile", "--models", "cnn1d_mnist1d", "--checkpoints", str(ARTIFACT_DIR), "--device", "cpu",
               "--batch-sizes", "1-2,4", "--warmup", "1", "--repeats", "5", "--threads", "1", "--out", str(out)])
    assert rc == 0
    profile = Profile.load(out)
    data = json.loads(out.read_text())
    mp = profile.model("cnn1d_mnist1d")
    meta = json.loads((ARTIFACT_DIR / "cnn1d_mnist1d.json").read_text())
    assert list(mp.exits) == meta["exits"] and mp.batch_sizes == (1, 2, 4)
    assert mp.accuracy == meta["accuracy"]  # accuracy per exit comes from the checkpoint
    assert profile.device.startswith("cpu: ") and data["threads"] == 1 and data["repeats"] == 5
    for e in mp.exits:
        for b in (1, 2, 4):
            q = profile.distribution("cnn1d_mnist1d", e, b)
            assert 0 < q["p50"] <= q["p90"] <= q["p95"] <= q["p99"]
    printed = capsys.readouterr().out
    assert "cnn1d_mnist1d" in printed and "b=4" in printed


def test_random_weight_layouts_compare_with_the_seed_profile(tmp_path, capsys):
    from scheduler.paths import seed_profile_path

    if not seed_profile_path().exists():
        pytest.skip(f"the seed profile is not at {seed_profile_path()}")
    out = tmp_path / "r.json"
    rc = main(["profile", "--models", "resnet50,resnet101", "--random-weights", "--input-size", "32",
               "--batch-sizes", "1-2", "--warmup", "0", "--repeats", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    profile = Profile.load(out)
    assert profile.model("resnet50").exits == ("layer1", "layer2", "layer3", "final")
    seed = json.loads(out.read_text())["models"]["resnet50"]
    assert seed["weights"] == "random" and seed["input_shape"] == [3, 32, 32]
    assert seed["accuracy"]["layer1"] == pytest.approx(0.5897)  # the seed profile's published figure
    printed = capsys.readouterr().out
    assert "layer1 / final" in printed and "final / resnet50 final" in printed and "batch b / batch 1" in printed


def test_profile_on_a_missing_gpu_says_so_and_fails(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc = main(["profile", "--models", "cnn1d_mnist1d", "--device", "cuda", "--out", str(tmp_path / "x.json")])
    assert rc != 0
    assert "no CUDA GPU is available" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_bad_arguments_are_clear_errors(capsys):
    assert main(["profile", "--models", "nope"]) == 2
    assert "unknown model 'nope'; the zoo has" in capsys.readouterr().err
    assert main(["profile", "--models", "cnn1d_mnist1d", "--input-size", "16"]) == 2
    assert "needs --random-weights" in capsys.readouterr().err
    assert main(["train", "--models", "resnet50"]) == 2
    assert "has no bundled dataset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="bad batch sizes '4-1'"):
        parse_batch_sizes("4-1")
    assert parse_batch_sizes("1-3,8, 2") == (1, 2, 3, 8)
    q = quantiles([1.0, 2.0, 3.0, 4.0, 100.0])
    assert q["p50"] == 3.0 and q["mean"] == 22.0 and q["p99"] > q["p95"] > q["p90"]


def test_train_command_writes_checkpoints_and_an_accuracy_table(tmp_path, capsys):
    rc = main(["train", "--models", "cnn1d_breast_cancer", "--epochs", "2", "--threads", "1", "--out", str(tmp_path),
               "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    entry = report["models"]["cnn1d_breast_cancer"]
    assert entry["exits"] == ["stage1", "final"] and set(entry["test_accuracy"]) == {"stage1", "final"}
    assert (tmp_path / "cnn1d_breast_cancer.pt").exists() and (tmp_path / "cnn1d_breast_cancer.json").exists()
