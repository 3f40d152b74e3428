"""Azure LLM inference trace 2023 -> our trace: on a small fixture, and on the real file where present."""

from __future__ import annotations

import csv
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from scheduler.paths import azure_llm_trace_path
from workloads.azure import convert_azure_llm, read_azure_llm
from workloads.mix import DeadlineMix
from workloads.trace import TraceError, read_trace, write_trace

FIXTURE = Path(__file__).parent / "fixtures" / "azure_llm_small.csv"
MODELS = ["resnet50", "resnet101", "resnet152"]
Z = 4.5  # standard errors allowed in the binomial share checks


def _source():
    """The fixture's times (s since the first record) and context lengths, parsed independently."""
    with FIXTURE.open() as fh:
        rows = list(csv.DictReader(fh))
    stamps = [datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f") for r in rows]
    times = np.array([(s - stamps[0]).total_seconds() for s in stamps])
    return times, np.array([int(r["ContextTokens"]) for r in rows])


def test_reads_the_fixture():
    trace = read_azure_llm(FIXTURE)
    times, tokens = _source()
    assert np.allclose(trace.times_s, times, atol=1e-6)
    assert list(trace.context_tokens) == list(tokens)
    assert trace.times_s[0] == 0.0


def test_context_buckets_send_short_prompts_to_the_first_model():
    rows = convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0))
    times, tokens = _source()
    assert len(rows) == len(times)
    assert np.allclose([r.arrival_s for r in rows], times, atol=1e-6)
    by_model = {m: [tokens[int(r.request_id)] for r in rows if r.model == m] for m in MODELS}
    # 24 distinct lengths over 3 equal buckets: exactly 8 each, ordered by length.
    assert [len(by_model[m]) for m in MODELS] == [8, 8, 8]
    assert max(by_model["resnet50"]) < min(by_model["resnet101"])
    assert max(by_model["resnet101"]) < min(by_model["resnet152"])


def test_weights_set_bucket_shares():
    rows = convert_azure_llm(FIXTURE, {"small": 3.0, "big": 1.0}, 50, np.random.default_rng(0))
    assert sum(r.model == "small" for r in rows) == 18
    assert sum(r.model == "big" for r in rows) == 6


def test_window_speedup_and_rate():
    times, _ = _source()
    rows = convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0), start_s=30.0, seconds=60.0)
    inside = times[(times >= 30.0) & (times < 90.0)]
    assert np.allclose([r.arrival_s for r in rows], inside - 30.0, atol=1e-6)
    fast = convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0), start_s=30.0, seconds=60.0,
                             speedup=4.0)
    assert np.allclose([r.arrival_s for r in fast], (inside - 30.0) / 4.0, atol=1e-6)
    assert [r.model for r in fast] == [r.model for r in rows]  # same shape, same assignment
    target = convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0), start_s=30.0, seconds=60.0,
                               rate_rps=10.0)
    # The window's mean rate is its count over its (rescaled) length.
    factor = 10.0 / (len(inside) / 60.0)
    assert len(target) / (60.0 / factor) == pytest.approx(10.0)
    assert np.allclose([r.arrival_s for r in target], (inside - 30.0) / factor, atol=1e-6)


def test_random_assignment_and_deadlines_are_seeded():
    mix = DeadlineMix.parse("20:0.5,100:0.5")
    a = convert_azure_llm(FIXTURE, MODELS, mix, np.random.default_rng(7), assign="random")
    b = convert_azure_llm(FIXTURE, MODELS, mix, np.random.default_rng(7), assign="random")
    c = convert_azure_llm(FIXTURE, MODELS, mix, np.random.default_rng(8), assign="random")
    assert a == b and a != c
    assert {r.deadline_ms for r in a} == {20.0, 100.0}


def test_output_is_a_valid_trace(tmp_path):
    rows = convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0), speedup=2.0)
    path = tmp_path / "llm.csv"
    write_trace(path, rows)
    assert read_trace(path, models=MODELS) == rows


@pytest.mark.parametrize("text, what", [
    ("time,ContextTokens,GeneratedTokens\n", "line 1: header is"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10,5\nyesterday,10,5\n",
     "line 3, column TIMESTAMP: 'yesterday' is not a timestamp"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,ten,5\n", "line 2, column ContextTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10,-5\n", "line 2, column GeneratedTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,10\n", "line 2: expected 3 fields"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no records"),
])
def test_bad_input_names_line_and_column(tmp_path, text, what):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        read_azure_llm(path)
    assert str(path) in str(info.value) and what in str(info.value)


def test_unsorted_records_are_sorted(tmp_path):
    path = tmp_path / "unsorted.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:50.5,20,1\n"
                    "2023-11-16 18:15:46.0,10,1\n")
    trace = read_azure_llm(path)
    assert list(trace.times_s) == [0.0, 4.5]
    assert list(trace.context_tokens) == [10, 20]


def test_rate_and_speedup_together_is_an_error():
    with pytest.raises(ValueError, match="not both"):
        convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0), rate_rps=5.0, speedup=2.0)


def test_empty_window_cannot_reach_a_rate():
    with pytest.raises(ValueError, match="holds no arrivals"):
        convert_azure_llm(FIXTURE, MODELS, 50, np.random.default_rng(0), start_s=5000.0, rate_rps=5.0)


REAL = azure_llm_trace_path()


@pytest.mark.skipif(not REAL.exists(), reason=f"the real Azure LLM trace is not at {REAL} "
                                             f"(set EDGESERVING_SHARED to the folder holding traces/)")
def test_real_azure_llm_trace():
    raw = np.loadtxt(REAL, delimiter=",", skiprows=1, usecols=(1,), dtype=np.int64)
    with REAL.open() as fh:
        next(fh)
        stamps = np.array([line.split(",", 1)[0] for line in fh], dtype="datetime64[ns]")
    times = (stamps - stamps.min()).astype(np.int64) / 1e9
    start_s, seconds, rate = 600.0, 900.0, 60.0
    rows = convert_azure_llm(REAL, MODELS, DeadlineMix.parse("20:0.3,50:0.5,200:0.2"), np.random.default_rng(1),
                             rate_rps=rate, start_s=start_s, seconds=seconds)
    inside = (times >= start_s) & (times < start_s + seconds)
    assert len(rows) == int(inside.sum()) > 1000
    factor = rate / (len(rows) / seconds)
    out_t = np.array([r.arrival_s for r in rows])
    assert np.all(np.diff(out_t) >= 0) and out_t[0] >= 0 and out_t[-1] < seconds / factor
    assert len(rows) / (seconds / factor) == pytest.approx(rate)
    # Context-length buckets: ordered by length, each about a third (up to ties at the edges).
    tokens = raw[inside][np.argsort(times[inside], kind="stable")]
    lengths = {m: tokens[[i for i, r in enumerate(rows) if r.model == m]] for m in MODELS}
    assert lengths["resnet50"].max() <= lengths["resnet101"].min()
    assert lengths["resnet101"].max() <= lengths["resnet152"].min()
    for m in MODELS:
        assert abs(len(lengths[m]) / len(rows) - 1 / 3) < 0.05, m
    n = len(rows)
    for d, p in ((20.0, 0.3), (50.0, 0.5), (200.0, 0.2)):
        k = sum(r.deadline_ms == d for r in rows)
        assert abs(k - n * p) <= Z * math.sqrt(n * p * (1 - p))
