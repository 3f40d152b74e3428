"""Policy specs (``name:key=value...``): one command-line word names a policy and its options."""

import pytest

from scheduler.policies import make_policy, parse_policy_spec
from scheduler.policies.lookahead import LookaheadPolicy
from scheduler.policies.spec import worker_policy_args


def test_values_are_json_when_they_parse_else_strings():
    assert parse_policy_spec("lookahead") == ("lookahead", {})
    assert parse_policy_spec("lookahead:latency_target=0.5:shed=drop:reserve=false:floors={\"A\": 0.7}") == (
        "lookahead", {"latency_target": 0.5, "shed": "drop", "reserve": False, "floors": {"A": 0.7}})


def test_the_spec_options_go_over_the_callers_and_the_spec_labels_the_summaries():
    p = make_policy("lookahead:bmax=4:target_load=0.6", bmax=8, quantile="p99")
    assert isinstance(p, LookaheadPolicy) and (p.bmax, p.target_load, p.quantile) == (4, 0.6, "p99")
    assert p.label == "lookahead:bmax=4:target_load=0.6" and make_policy("lookahead").label == "lookahead"


@pytest.mark.parametrize(("spec", "message"), [
    (":shed=drop", "has no policy name"),
    ("lookahead:shed", "is not key=value"),
    ("lookahead:=1", "is not key=value"),
    ("lookahead:shed=drop:shed=off", "sets 'shed' twice"),
    ("nope:x=1", "unknown policy 'nope'"),
    ("lookahead:no_such_option=1", "policy 'lookahead' with options .*no_such_option"),
    ("lookahead:shed=sometimes", "shed must be one of"),
])
def test_a_malformed_spec_is_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        make_policy(spec)


def test_a_spec_becomes_the_serving_configs_policy_and_options():
    from scheduler.serving.config import parse_config

    assert worker_policy_args("edgeserving") == {"policy": "edgeserving"}  # the config's own options stay
    args = worker_policy_args("lookahead:latency_target=0.5:preempt=true")
    assert args == {"policy": "lookahead", "policy_options": {"latency_target": 0.5, "preempt": True}}
    models = {"m": {"input_shape": [2], "num_classes": 3}}
    cfg = parse_config({"executor": "profile", "profile": "p.json", "models": models, **args})
    assert (cfg.policy, cfg.policy_options) == ("lookahead", {"latency_target": 0.5, "preempt": True})
