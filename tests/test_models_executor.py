"""The torch executor: one plan = one slot; predictions, confidences, exits taken, measured time."""

from __future__ import annotations

import pytest
import torch

from models.device import DeviceError, pick_device
from models.executor import ConfidenceExit, TorchExecutor
from models.families import build
from models.train import init_model
from scheduler.clock import VirtualClock
from scheduler.engine import Engine
from scheduler.policies import make_policy
from scheduler.profile import Profile
from scheduler.types import Outcome, Plan, Request


def tiny_models():
    cnn = init_model(lambda: build("cnn1d", (1, 40), 10, {"channels": [8, 8, 16], "exits": ["stage1", "stage2"]}), 0)
    vit = init_model(lambda: build("vit", (1, 8, 8), 10, {"patch": 2, "dim": 16, "depth": 3, "heads": 2,
                                                            "exit_every": 1}), 1)
    return {"cnn": cnn.eval(), "vit": vit.eval()}


def requests(model: str, shape, n: int, seed: int = 0) -> tuple[Request, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(Request(f"{model}-{i}", model, 0.0, 1.0, payload=torch.randn(*shape, generator=gen))
                 for i in range(n))


def test_a_slot_returns_predictions_confidences_exits_and_its_measured_time():
    models = tiny_models()
    clock = VirtualClock()
    ex = TorchExecutor(models, "cpu", clock)
    reqs = requests("cnn", (1, 40), 5)
    for exit in ("stage1", "stage2", "final"):
        start = clock.now()
        result = ex.run(Plan.run("cnn", exit, reqs, 1.0))
        with torch.inference_mode():
            probs = torch.softmax(models["cnn"](torch.stack([r.payload for r in reqs]), exit=exit), -1)
        assert result.exits == (exit,) * 5
        assert list(result.predictions) == probs.argmax(-1).tolist()
        assert result.confidences == pytest.approx(probs.max(-1).values.tolist(), abs=1e-6)
        assert result.slot_ms > 0
        # On a virtual clock the measured time passes on the engine's clock.
        assert clock.now() - start == pytest.approx(result.slot_ms / 1000.0)


def test_confidence_exit_is_per_model_reports_the_exit_taken_and_respects_the_cap():
    models = tiny_models()
    ex = TorchExecutor(models, "cpu", confidence={"vit": ConfidenceExit((0.0, 2.0), "max_softmax")})
    reqs = requests("vit", (1, 8, 8), 6)
    assert ex.run(Plan.run("vit", "final", reqs, 1.0)).exits == ("block1",) * 6  # threshold 0: all leave first
    ex.set_confidence("vit", ConfidenceExit((2.0, 2.0)))  # nobody is ever confident enough
    assert ex.run(Plan.run("vit", "block2", reqs, 1.0)).exits == ("block2",) * 6  # ...and the cap holds
    assert ex.run(Plan.run("vit", "final", reqs, 1.0)).exits == ("final",) * 6
    # Half the batch leaves at block1 when the threshold sits at the median confidence.
    with torch.inference_mode():
        conf = torch.softmax(models["vit"](torch.stack([r.payload for r in reqs]), exit=0), -1).max(-1).values
    ex.set_confidence("vit", ConfidenceExit((float(conf.median()), 2.0)))
    result = ex.run(Plan.run("vit", "final", reqs, 1.0))
    left_early = [i for i, e in enumerate(result.exits) if e == "block1"]
    assert left_early == [i for i in range(6) if conf[i] >= conf.median()]
    assert set(result.exits) == {"block1", "final"}
    assert ex.run(Plan.run("cnn", "final", requests("cnn", (1, 40), 3), 1.0)).exits == ("final",) * 3  # not enabled
    ex.set_confidence("vit", None)
    assert ex.run(Plan.run("vit", "final", reqs, 1.0)).exits == ("final",) * 6
    with pytest.raises(ValueError, match="need 2 thresholds"):
        ex.set_confidence("vit", ConfidenceExit((0.5,)))


@pytest.mark.parametrize("payload, message", [
    (None, "payload is NoneType; model 'cnn' expects a float32 tensor of shape \\[1, 40\\]"),
    (torch.zeros(1, 41), "payload is torch.float32 of shape \\[1, 41\\]; model 'cnn' expects"),
    (torch.zeros(1, 40, dtype=torch.float64), "payload is torch.float64 of shape \\[1, 40\\]"),
    (torch.full((1, 40), float("nan")), "request\\(s\\) \\['bad'\\] holds NaN or infinite values"),
])
def test_a_bad_payload_raises_before_any_compute(payload, message):
    ex = TorchExecutor(tiny_models(), "cpu")
    reqs = (*requests("cnn", (1, 40), 2), Request("bad", "cnn", 0.0, 1.0, payload=payload))
    with pytest.raises(ValueError, match=message):
        ex.run(Plan.run("cnn", "final", reqs, 1.0))


def test_unknown_model_or_exit_lists_the_valid_ones():
    ex = TorchExecutor(tiny_models(), "cpu")
    with pytest.raises(ValueError, match=r"unknown model 'nope'; this executor holds \['cnn', 'vit'\]"):
        ex.run(Plan.run("nope", "final", requests("nope", (1, 40), 1), 1.0))
    with pytest.raises(ValueError, match=r"unknown exit 'layer9'; valid exits are \['stage1', 'stage2', 'final'\]"):
        ex.run(Plan.run("cnn", "layer9", requests("cnn", (1, 40), 1), 1.0))


def test_in_the_engine_a_bad_payload_fails_only_its_own_slot():
    models = tiny_models()
    profile = Profile.from_latencies("tiny", {"cnn": {"stage1": {1: 1.0}, "stage2": {1: 2.0}, "final": {1: 3.0}}})
    clock = VirtualClock()
    engine = Engine(profile, make_policy("all_final", bmax=1), TorchExecutor({"cnn": models["cnn"]}, "cpu", clock),
                    clock, models=["cnn"])
    good = requests("cnn", (1, 40), 2)
    engine.submit(Request("bad", "cnn", 0.0, 10.0, payload=torch.zeros(3)))
    for r in good:
        engine.submit(Request(r.id, "cnn", 0.0, 10.0, payload=r.payload))
    outcomes = {}
    while engine.pending():
        for res in engine.step().results:
            outcomes[res.request.id] = (res.outcome, res.exit, res.prediction)
    assert outcomes["bad"][0] is Outcome.FAILED
    assert outcomes["cnn-0"][0] is Outcome.MET and outcomes["cnn-0"][1] == "final"
    assert outcomes["cnn-1"][0] is Outcome.MET and isinstance(outcomes["cnn-1"][2], int)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU is available"):
            pick_device("cuda")
