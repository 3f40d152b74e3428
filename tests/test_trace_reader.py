"""The trace CSV reader: round trips, and errors that name the file, the line and the column."""

from __future__ import annotations

import pytest

from workloads.trace import TraceError, TraceRow, read_trace, write_trace


def _write(tmp_path, text: str):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_round_trip(tmp_path):
    rows = [TraceRow(0.0, "a", 50.0, "r0", 7, 3), TraceRow(0.25, "b", 20.0, "r1"),
            TraceRow(0.25, "a", 200.0, "r2", 0, None)]
    path = tmp_path / "out" / "trace.csv"
    assert write_trace(path, rows) == 3
    assert read_trace(path) == rows


def test_optional_columns_and_default_ids(tmp_path):
    rows = read_trace(_write(tmp_path, "model,arrival_s,deadline_ms\na,0.5,50\nb,1,20\n\n"))
    assert rows == [TraceRow(0.5, "a", 50.0, "0"), TraceRow(1.0, "b", 20.0, "1")]


@pytest.mark.parametrize("text, where, what", [
    ("arrival_s,model,deadline_ms\n0.5,a,50\n0.2,a,50\n", "line 3, column arrival_s", "not sorted"),
    ("arrival_s,model,deadline_ms,colour\n0,a,50,red\n", "line 1", "unknown column(s) ['colour']"),
    ("arrival_s,model\n0,a\n", "line 1", "missing required column(s) ['deadline_ms']"),
    ("arrival_s,model,deadline_ms\n0,a,-5\n", "line 2, column deadline_ms", "must be positive"),
    ("arrival_s,model,deadline_ms\n0,a,0\n", "line 2, column deadline_ms", "must be positive"),
    ("arrival_s,model,deadline_ms\n0,a,50\nsoon,a,50\n", "line 3, column arrival_s", "not a number: 'soon'"),
    ("arrival_s,model,deadline_ms\n0,a,fast\n", "line 2, column deadline_ms", "not a number"),
    ("arrival_s,model,deadline_ms\n0,a,inf\n", "line 2, column deadline_ms", "not a finite number"),
    ("arrival_s,model,deadline_ms\n-1,a,50\n", "line 2, column arrival_s", "negative arrival"),
    ("arrival_s,model,deadline_ms\n0,,50\n", "line 2, column model", "empty model"),
    ("arrival_s,model,deadline_ms\n0,a\n", "line 2", "expected 3 fields, got 2"),
    ("arrival_s,model,deadline_ms,input_seed\n0,a,50,x\n", "line 2, column input_seed", "not an integer"),
    ("arrival_s,model,deadline_ms,input_seed\n0,a,50,-3\n", "line 2, column input_seed", ">= 0"),
    ("arrival_s,model,deadline_ms,label\n0,a,50,1.5\n", "line 2, column label", "not an integer"),
    ("arrival_s,model,deadline_ms,request_id\n0,a,50,x\n1,a,50,y\n2,a,50,x\n", "line 4, column request_id",
     "repeats line 2"),
    ("", "line 1", "empty file"),
])
def test_errors_name_file_line_and_column(tmp_path, text, where, what):
    path = _write(tmp_path, text)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    message = str(info.value)
    assert str(path) in message and where in message and what in message, message


def test_unknown_model_against_a_model_list(tmp_path):
    path = _write(tmp_path, "arrival_s,model,deadline_ms\n0,resnet18,50\n")
    with pytest.raises(TraceError, match=r"line 2, column model: unknown model 'resnet18'; known models are \['a'"):
        read_trace(path, models=["a", "b"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "nope.csv")
