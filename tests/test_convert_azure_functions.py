"""Azure Functions 2019 invocation counts -> our trace, on a fixture in the exact public schema."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from workloads.azure import busiest_functions, convert_azure_functions
from workloads.trace import TraceError, read_trace, write_trace

FIXTURE = Path(__file__).parent / "fixtures" / "azure_functions_2019_small.csv"  # see fixtures/make_fixtures.py


def _h(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_busiest_functions_over_the_day():
    funcs, trace_s = busiest_functions(FIXTURE, 3)
    assert trace_s == 1440 * 60
    # alpha and delta tie at 28800: the smaller (HashOwner, HashApp, HashFunction) wins.
    first_two = sorted(["alpha", "delta"], key=lambda n: (_h("app-" + n), _h(n)))
    assert [f.function for f in funcs] == [_h(first_two[0]), _h(first_two[1]), _h("bravo")]
    assert [f.total for f in funcs] == [28800, 28800, 7200]


def test_busiest_functions_inside_a_window():
    # Minutes 1..60: alpha 20/min, bravo 10/min, foxtrot ~2/min, charlie 1/min, delta 0.
    funcs, _ = busiest_functions(FIXTURE, 4, start_s=0.0, seconds=3600.0)
    assert [f.function for f in funcs] == [_h("alpha"), _h("bravo"), _h("foxtrot"), _h("charlie")]
    assert [f.trigger for f in funcs] == ["http", "queue", "http", "timer"]


def test_counts_become_arrivals_within_each_minute():
    models = ["resnet50", "resnet101", "resnet152"]
    rows = convert_azure_functions(FIXTURE, models, 50, np.random.default_rng(0), seconds=600.0)
    # Window of minutes 1..10: alpha (200), bravo (100), foxtrot (20) map to the three models.
    per_model = {m: np.array([r.arrival_s for r in rows if r.model == m]) for m in models}
    expected = {"resnet50": [20] * 10, "resnet101": [10] * 10, "resnet152": [(m * 7) % 5 for m in range(1, 11)]}
    for m in models:
        counts, _ = np.histogram(per_model[m], np.arange(0, 601, 60))
        assert list(counts) == expected[m], m
    assert [r.arrival_s for r in rows] == sorted(r.arrival_s for r in rows)
    assert [r.input_seed for r in rows] == list(range(len(rows)))


def test_partial_minutes_window_speedup_and_rate():
    kwargs = dict(start_s=90.0, seconds=120.0)
    rows = convert_azure_functions(FIXTURE, ["a"], 50, np.random.default_rng(3), **kwargs)
    t = np.array([r.arrival_s for r in rows])
    assert t.min() >= 0 and t.max() < 120.0
    # alpha: 20 per minute, uniform in the minute; the window covers 2 minutes' worth in 3 minutes.
    assert 20 <= len(rows) <= 60
    fast = convert_azure_functions(FIXTURE, ["a"], 50, np.random.default_rng(3), speedup=3.0, **kwargs)
    assert np.allclose([r.arrival_s for r in fast], t / 3.0)
    paced = convert_azure_functions(FIXTURE, ["a"], 50, np.random.default_rng(3), rate_rps=2.0, **kwargs)
    factor = 2.0 / (len(rows) / 120.0)
    assert len(paced) / (120.0 / factor) == pytest.approx(2.0)
    assert np.allclose([r.arrival_s for r in paced], t / factor)


def test_seeded(tmp_path):
    a = convert_azure_functions(FIXTURE, ["x", "y"], [(20, 0.5), (80, 0.5)],
                                np.random.default_rng(9), seconds=300.0)
    b = convert_azure_functions(FIXTURE, ["x", "y"], [(20, 0.5), (80, 0.5)], np.random.default_rng(9), seconds=300.0)
    assert a == b
    path = tmp_path / "f.csv"
    write_trace(path, a)
    assert read_trace(path, models=["x", "y"]) == a


def test_too_few_busy_functions():
    with pytest.raises(ValueError, match="only 5 function"):
        busiest_functions(FIXTURE, 6)


@pytest.mark.parametrize("header, row, what", [
    ("HashOwner,HashApp,Function,Trigger,1,2", "o,a,f,http,1,2", "line 1: the header starts"),
    ("HashOwner,HashApp,HashFunction,Trigger,1,3", "o,a,f,http,1,2", "line 1, column 6: minute column named '3'"),
    ("HashOwner,HashApp,HashFunction,Trigger", "o,a,f,http", "no minute columns"),
    ("HashOwner,HashApp,HashFunction,Trigger,1,2", "o,a,f,http,1,many", "line 2, column 2: not an integer count"),
    ("HashOwner,HashApp,HashFunction,Trigger,1,2", "o,a,f,http,1,-2", "line 2, column 2: negative count"),
    ("HashOwner,HashApp,HashFunction,Trigger,1,2", "o,a,f,http,1", "line 2: expected 6 fields"),
])
def test_bad_input_names_line_and_column(tmp_path, header, row, what):
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(TraceError) as info:
        busiest_functions(path, 1)
    assert str(path) in str(info.value) and what in str(info.value)


def test_window_past_the_end():
    with pytest.raises(ValueError, match="past the trace's end"):
        busiest_functions(FIXTURE, 1, start_s=1440 * 60.0)
