"""Checkpoints: round trip, and clear errors naming the file for corrupt or mismatched ones."""

from __future__ import annotations

import json

import pytest
import torch

from models.checkpoint import CheckpointError, ModelMeta, load_checkpoint, read_meta, save_checkpoint
from models.families import build
from models.train import init_model

ARCH = {"channels": [8, 8, 16], "blocks": 1, "exits": ["stage1", "stage2"]}


def trained_like(seed: int = 0):
    model = init_model(lambda: build("cnn1d", (1, 40), 10, ARCH), seed).eval()
    model.set_normalization(torch.full((1, 40), 0.5), torch.full((1, 40), 2.0))
    meta = ModelMeta(name="tiny", family="cnn1d", arch=ARCH, input_shape=(1, 40), num_classes=10,
                     exits=model.exits, accuracy={"stage1": 0.7, "stage2": 0.8, "final": 0.9},
                     val_accuracy={"stage1": 0.71, "stage2": 0.79, "final": 0.88},
                     thresholds={"max_softmax": {"stage1": 0.95, "stage2": 0.9}, "entropy": {"stage1": 0.1}},
                     target_accuracy=0.87, dataset="mnist1d", seed=3)
    return model, meta


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_round_trip_gives_the_same_network_and_metadata(tmp_path, dtype):
    model, meta = trained_like()
    path = save_checkpoint(model, meta, tmp_path, weights_dtype=dtype)
    assert path == tmp_path / "tiny.json" and (tmp_path / "tiny.pt").exists()
    loaded, meta2 = load_checkpoint(tmp_path / "tiny.pt")  # either half of the pair works
    assert not loaded.training
    assert meta2.exits == ("stage1", "stage2", "final") and meta2.input_shape == (1, 40)
    assert meta2.accuracy == meta.accuracy and meta2.thresholds == meta.thresholds
    assert meta2.dataset == "mnist1d" and meta2.seed == 3 and meta2.weights_dtype == str(dtype)[6:]
    assert meta2.threshold_list("max_softmax") == [0.95, 0.9]
    assert meta2.threshold_list("entropy") == [0.1, -1.0]  # a missing threshold never lets a sample out
    x = torch.randn(3, 1, 40)
    with torch.inference_mode():
        for e in model.exits:
            expected = model(x, exit=e) if dtype == torch.float32 else None
            got = loaded(x, exit=e)
            assert got.dtype == torch.float32
            if expected is not None:
                torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for p in loaded.state_dict().values():
        assert not p.is_floating_point() or p.dtype == torch.float32
    assert read_meta(path).exits == meta2.exits


def test_weights_load_with_weights_only(tmp_path, monkeypatch):
    model, meta = trained_like()
    save_checkpoint(model, meta, tmp_path)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_checkpoint(tmp_path / "tiny.json")
    assert seen.get("weights_only") is True


def test_corrupt_weights_name_the_file(tmp_path):
    model, meta = trained_like()
    save_checkpoint(model, meta, tmp_path)
    pt = tmp_path / "tiny.pt"
    pt.write_bytes(pt.read_bytes()[: 200])
    with pytest.raises(CheckpointError, match=rf"{pt}: corrupt weights: SHA-256 differs"):
        load_checkpoint(pt)
    # Without a recorded digest the archive itself is found broken.
    data = json.loads((tmp_path / "tiny.json").read_text())
    data["weights_sha256"] = ""
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"{pt}: corrupt weights, not a state_dict saved by torch.save"):
        load_checkpoint(pt)


def test_wrong_architecture_names_the_file(tmp_path):
    model, meta = trained_like()
    save_checkpoint(model, meta, tmp_path)
    meta_path = tmp_path / "tiny.json"
    data = json.loads(meta_path.read_text())
    data["arch"] = {**ARCH, "channels": [8, 16, 16]}
    meta_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'tiny.pt'}: weights do not match the architecture "
                                              rf"in {meta_path}.*size mismatch"):
        load_checkpoint(meta_path)
    data["arch"] = {**ARCH, "exits": ["stage1"]}
    meta_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"{meta_path}: the architecture has exits"):
        load_checkpoint(meta_path)
    data["family"] = "mlp"
    meta_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"{meta_path}: cannot build.*unknown model family 'mlp'"):
        load_checkpoint(meta_path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("exits"), r"missing key\(s\) \['exits'\]"),
    (lambda d: d.update(accuracy={"stage1": 2.0, "stage2": 0.5, "final": 0.5}), r"'accuracy.stage1' must be a number"),
    (lambda d: d.update(weights="../elsewhere.pt"), "must be a plain file name"),
    (lambda d: d.update(input_shape=[1, -40]), "'input_shape' must be a list of positive integers"),
    (lambda d: d.update(format="other/9"), "unsupported checkpoint format"),
])
def test_bad_metadata_names_the_file_and_the_key(tmp_path, edit, message):
    model, meta = trained_like()
    path = save_checkpoint(model, meta, tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"{path}: .*{message}"):
        load_checkpoint(path)


def test_missing_and_unparsable_files_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'nope.json'}: cannot read checkpoint metadata"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'bad.json'}: corrupt checkpoint metadata, not valid JSON"):
        load_checkpoint(tmp_path / "bad.json")
    model, meta = trained_like()
    save_checkpoint(model, meta, tmp_path)
    (tmp_path / "tiny.pt").unlink()
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'tiny.pt'}: cannot read weights named in"):
        load_checkpoint(tmp_path / "tiny.json")
