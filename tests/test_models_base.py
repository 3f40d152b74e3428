"""The early-exit base module on every family: exit shapes, exit equivalence, no work past the exit,
and the confidence exit under a cap."""

from __future__ import annotations

import itertools

import pytest
import torch

from models.base import EarlyExitNet
from models.confidence import calibrate_threshold, is_confident, score
from models.families import build
from models.train import init_model

# Small members of every family, including both ResNet block types and a 1-D transformer.
ARCHS = {
    "resnet_basic": ("resnet", (1, 8, 8), {"block": "basic", "layers": [1, 1, 1], "widths": [8, 16, 16],
                                           "exits": ["layer1", "layer2"]}),
    "resnet_bottleneck": ("resnet", (3, 16, 16), {"block": "bottleneck", "layers": [1, 2, 1, 1],
                                                  "widths": [4, 8, 8, 8], "stem": "imagenet",
                                                  "exits": ["layer1", "layer2", "layer3"]}),
    "resnet_upsampled": ("resnet", (1, 8, 8), {"layers": [1, 1], "widths": [8, 8], "upsample": 2,
                                               "exits": ["layer1"]}),
    "vit": ("vit", (1, 8, 8), {"patch": 2, "dim": 16, "depth": 4, "heads": 2, "exit_every": 1, "conv_stem": 4}),
    "vit_1d": ("vit", (1, 40), {"patch": 4, "dim": 16, "depth": 3, "heads": 2, "exit_after": [2]}),
    "cnn1d": ("cnn1d", (1, 40), {"channels": [8, 8, 16], "blocks": 2, "exits": ["stage1", "stage2"]}),
}


def make(key: str, seed: int = 0) -> EarlyExitNet:
    family, shape, arch = ARCHS[key]
    return init_model(lambda: build(family, shape, 7, arch), seed).eval()


@pytest.mark.parametrize("key", sorted(ARCHS))
def test_every_exit_has_the_right_shape(key):
    model = make(key)
    x = torch.randn(5, *model.input_shape)
    with torch.inference_mode():
        outs = model.forward_all(x)
        assert len(outs) == len(model.exits) >= 2
        for e, out in zip(model.exits, outs):
            assert out.shape == (5, 7), f"exit {e}"
            assert model(x, exit=e).shape == (5, 7)
    assert model.exits[-1] == "final"


@pytest.mark.parametrize("key", sorted(ARCHS))
def test_forward_to_an_exit_equals_that_head_of_the_all_exits_pass(key):
    model = make(key)
    x = torch.randn(4, *model.input_shape)
    with torch.inference_mode():
        all_heads = model.forward_all(x)
        for k, e in enumerate(model.exits):
            torch.testing.assert_close(model(x, exit=e), all_heads[k], rtol=0, atol=0)
            torch.testing.assert_close(model(x, exit=k), all_heads[k], rtol=0, atol=0)
        iterated = [(name, logits) for name, logits in model.iter_exits(x)]
    assert [n for n, _ in iterated] == list(model.exits)
    for (_, logits), ref in zip(iterated, all_heads):
        torch.testing.assert_close(logits, ref, rtol=0, atol=0)


@pytest.mark.parametrize("key", sorted(ARCHS))
def test_stages_and_heads_past_the_exit_never_run(key):
    model = make(key)
    calls: list[str] = []
    for i, stage in enumerate(model.stages):
        stage.register_forward_hook(lambda *_a, i=i: calls.append(f"stage{i}"))
    for i, head in enumerate(model.heads):
        head.register_forward_hook(lambda *_a, i=i: calls.append(f"head{i}"))
    x = torch.randn(2, *model.input_shape)
    with torch.inference_mode():
        for k, e in enumerate(model.exits):
            calls.clear()
            model(x, exit=e)
            assert calls == [*(f"stage{i}" for i in range(k + 1)), f"head{k}"], e
        calls.clear()
        for name, _ in model.iter_exits(x, cap=0):
            assert name == model.exits[0]
        assert calls == ["stage0", "head0"]


def test_exit_placement_is_configurable():
    resnet = build("resnet", (1, 8, 8), 10, {"layers": [1, 1, 1, 1], "widths": [4, 4, 4, 4], "exits": ["layer2"]})
    assert resnet.exits == ("layer2", "final")
    vit = build("vit", (1, 8, 8), 10, {"patch": 2, "dim": 8, "depth": 6, "heads": 2, "exit_every": 3})
    assert vit.exits == ("block3", "final")
    vit = build("vit", (1, 8, 8), 10, {"patch": 2, "dim": 8, "depth": 6, "heads": 2, "exit_after": [1, 5]})
    assert vit.exits == ("block1", "block5", "final")
    cnn = build("cnn1d", (1, 40), 10, {"channels": [4, 4, 4, 4], "exits": ["stage3"]})
    assert cnn.exits == ("stage3", "final")


def test_unknown_exit_and_bad_placement_list_the_valid_ones():
    model = make("cnn1d")
    with pytest.raises(ValueError, match=r"unknown exit 'stage9'; valid exits are \['stage1', 'stage2', 'final'\]"):
        model(torch.randn(1, 1, 40), exit="stage9")
    with pytest.raises(ValueError, match="out of range"):
        model.exit_index(3)
    with pytest.raises(ValueError, match=r"must name layers before the last one \(\['layer1', 'layer2'\]\)"):
        build("resnet", (1, 8, 8), 10, {"layers": [1, 1, 1], "exits": ["layer3"]})
    with pytest.raises(ValueError, match="unknown model family 'mlp'; known families are"):
        build("mlp", (1, 8, 8), 10, {})
    with pytest.raises(ValueError, match="bad architecture for family 'vit'"):
        build("vit", (1, 8, 8), 10, {"nonsense": 1})


def test_confidence_exit_never_passes_the_cap_and_compacts_the_batch():
    model = make("vit")  # exits block1, block2, block3, final
    x = torch.randn(64, *model.input_shape)
    with torch.inference_mode():
        heads = model.forward_all(x)
    # Thresholds at the median confidence of each head: about half the batch leaves at every head.
    thresholds = [float(score(h, "max_softmax").median()) for h in heads[:-1]]
    seen: list[int] = []
    for stage in model.stages:
        stage.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].shape[0]))
    for cap in range(len(model.exits)):
        seen.clear()
        with torch.inference_mode():
            out = model.forward_confident(x, cap, thresholds, "max_softmax")
        assert int(out.exit_indices.max()) <= cap
        assert list(out.stage_batches) == seen  # the stages really ran on the reported sizes
        assert seen[0] == 64 and all(a > b for a, b in itertools.pairwise(seen))  # each stage saw fewer samples
        for i, k in enumerate(out.exit_indices.tolist()):  # each sample got the logits of the head it left at
            torch.testing.assert_close(out.logits[i], heads[k][i], rtol=1e-4, atol=1e-5)
            earlier_confident = [bool(is_confident(heads[j][i:i + 1], "max_softmax", thresholds[j]))
                                 for j in range(k)]
            assert not any(earlier_confident)  # it left at the *first* confident head
            if k < cap:
                assert bool(is_confident(heads[k][i:i + 1], "max_softmax", thresholds[k]))


def test_confidence_exit_with_entropy_and_extreme_thresholds():
    model = make("cnn1d")
    x = torch.randn(16, *model.input_shape)
    with torch.inference_mode():
        never = model.forward_confident(x, "final", [-1.0, -1.0], "entropy")
        always = model.forward_confident(x, "final", [1.0, 1.0], "entropy")
        capped = model.forward_confident(x, "stage2", [-1.0, -1.0], "entropy")
    assert never.exit_indices.tolist() == [2] * 16 and never.stage_batches == (16, 16, 16)
    assert always.exit_indices.tolist() == [0] * 16 and always.stage_batches == (16,)
    assert capped.exit_indices.tolist() == [1] * 16 and capped.stage_batches == (16, 16)


def test_calibrated_threshold_meets_the_target_on_the_samples_it_lets_out():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (400,), generator=gen)
    logits = torch.randn(400, 5, generator=gen)
    # Make the confident half mostly right and the rest random.
    strong = torch.rand(400, generator=gen) < 0.5
    logits[strong, labels[strong]] += 6.0
    for criterion in ("max_softmax", "entropy"):
        t = calibrate_threshold(logits, labels, criterion, 0.95)
        out = is_confident(logits, criterion, t)
        assert out.sum() >= 150  # it lets most of the confident half out
        acc = float((logits[out].argmax(-1) == labels[out]).float().mean())
        assert acc >= 0.95
    assert calibrate_threshold(torch.zeros(10, 5) + torch.eye(5)[torch.zeros(10, dtype=torch.long)],
                               torch.ones(10, dtype=torch.long), "max_softmax", 0.9) == 2.0  # never met: never exits
