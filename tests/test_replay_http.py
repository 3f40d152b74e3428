"""The live replayer against a real local HTTP server: open loop, outcomes, inputs, results, CLI."""

from __future__ import annotations

import csv
import json
import socket
import time

import numpy as np
import pytest

from scheduler.cli import main
from scheduler.results import RESULT_COLUMNS
from scheduler.types import Outcome
from tests.replay_server import INPUT_SHAPE, ReplayTestServer
from workloads.inputs import make_inputs
from workloads.replay import replay_http
from workloads.trace import TraceRow, write_trace


def _even(n: int, span_s: float, model: str = "ok", deadline_ms: float = 100.0) -> list[TraceRow]:
    return [TraceRow(span_s * i / n, model, deadline_ms, f"r{i}", input_seed=1000 + i) for i in range(n)]


def test_a_slow_server_does_not_slow_the_send_schedule():
    n, span_s, service_s = 60, 3.0, 1.5  # a closed loop would need n * service_s = 90 s
    rows = _even(n, span_s)
    with ReplayTestServer(delay_s=service_s) as server:
        report = replay_http(rows, server.url, grace_ms=10_000)
    rec = server.record
    assert len(report.results) == n and all(r.outcome is Outcome.MET for r in report.results)
    assert min(r.latency_ms for r in report.results) >= service_s * 1000
    # Sends track the schedule: every request reached the server within 0.5 s of its slot
    # relative to the first one, although each answer took 1.5 s.
    arrived = np.sort(np.asarray(rec.arrived_s)) - min(rec.arrived_s)
    scheduled = np.array([r.arrival_s for r in rows])
    assert np.max(np.abs(arrived - scheduled)) < 0.5, np.max(np.abs(arrived - scheduled))
    assert report.lag.max_ms < 500
    # ~service_s * rate = 30 requests overlap in an open loop (1 in a closed loop).
    assert rec.peak_in_flight >= 15 and report.peak_in_flight >= 15


def test_a_replayer_that_falls_behind_says_so():
    rows = _even(30, 0.3)  # one request every 10 ms
    with ReplayTestServer() as server:
        # A progress callback that blocks the event loop 30 ms per call makes the sender late.
        report = replay_http(rows, server.url, on_progress=lambda sent, done: time.sleep(0.03))
    assert len(report.results) == 30
    assert report.lag.fell_behind and report.lag.max_ms > 100
    assert "FELL BEHIND" in report.lag.describe()


def test_every_request_gets_exactly_one_outcome():
    expected = {"ok": (Outcome.MET, None), "late": (Outcome.LATE, None),
                "shed": (Outcome.DROPPED, "deadline_unreachable"), "full": (Outcome.REJECTED, "queue_full"),
                "crash": (Outcome.FAILED, "slot_failed: RuntimeError: boom"), "garbage": (Outcome.FAILED, "http_500"),
                "badexit": (Outcome.FAILED, "exit 'middle'"), "stuck": (Outcome.FAILED, "client_timeout")}
    rows = [TraceRow(0.02 * i, model, 50.0, f"{model}-{k}") for k in range(2) for i, model in enumerate(expected)]
    rows.sort(key=lambda r: r.arrival_s)
    with ReplayTestServer(stuck_s=30.0) as server:
        t0 = time.perf_counter()
        report = replay_http(rows, server.url, grace_ms=300)
        elapsed_s = time.perf_counter() - t0
    assert elapsed_s < 20  # the stuck requests were cut at deadline + grace, not after 30 s
    assert [r.request.id for r in report.results] == [r.request_id for r in rows]
    for row, result in zip(rows, report.results):
        outcome, reason = expected[row.model]
        assert result.outcome is outcome, (row.model, result)
        assert reason is None or reason in result.reason, (row.model, result.reason)
        if outcome.completed:
            assert result.exit == "final" and result.batch_size == 2 and result.queue_ms == 1.0
            assert result.latency_ms > 0
        else:
            assert result.latency_ms is None
    summary = report.summary()
    assert summary["requests"] == len(rows) and summary["policy"] == "stub-policy"
    assert summary["outcomes"] == {"MET": 2, "LATE": 2, "REJECTED": 2, "DROPPED": 2, "FAILED": 8}


def test_inputs_are_deterministic_and_shaped_from_v1_models(tmp_path):
    rows = [*_even(5, 0.1), TraceRow(0.2, "ok", 50.0, "no-seed")]
    with ReplayTestServer() as server:
        replay_http(rows, server.url)
    bodies = {b["request_id"]: b for b in server.record.bodies}
    for i, row in enumerate(rows):
        body = bodies[row.request_id]
        seed = row.input_seed if row.input_seed is not None else i
        assert body["inputs"] == make_inputs(INPUT_SHAPE, seed)
        assert np.asarray(body["inputs"]).shape == tuple(INPUT_SHAPE)
        assert body["model"] == "ok" and body["deadline_ms"] == row.deadline_ms


def test_bounds_and_client_judging():
    rows = _even(40, 2.0, deadline_ms=50.0)
    with ReplayTestServer(delay_s=0.06) as server:
        client = replay_http(rows, server.url, max_seconds=1.0, max_requests=15, judge="client", label="mine")
        served = replay_http(rows, server.url, max_requests=5)
    assert len(client.results) == 15 and client.trace_rows == 40
    assert len(server.record.bodies) == 15 + 5
    # Every answer takes >= 60 ms against a 50 ms deadline: the server calls them MET, the
    # client's judge LATE; the server-judged replay counts the disagreement.
    assert all(r.outcome is Outcome.LATE for r in client.results)
    assert all(r.outcome is Outcome.MET for r in served.results) and served.client_late == 5
    assert client.summary()["policy"] == "mine"


def test_unknown_model_and_unreachable_server():
    with ReplayTestServer() as server, pytest.raises(ValueError, match=r"model\(s\) \['resnet18'\]"):
        replay_http([TraceRow(0.0, "resnet18", 50.0, "0")], server.url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(ConnectionError, match="cannot reach the server"):
            replay_http(_even(1, 0.1), f"http://127.0.0.1:{port}")


def test_cli_replay_writes_results_and_summary_json(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    write_trace(trace, [*_even(8, 0.2, "ok"), TraceRow(0.3, "shed", 50.0, "s")])
    out = tmp_path / "res.csv"
    with ReplayTestServer() as server:
        code = main(["replay", str(trace), "--url", server.url, "--results", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"] == 9 and summary["outcomes"]["DROPPED"] == 1
    assert summary["replay"]["mode"] == "live" and "p99_ms" in summary["replay"]["send_lag"]
    with out.open() as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == RESULT_COLUMNS
    assert [line[0] for line in lines[1:]] == [f"r{i}" for i in range(8)] + ["s"]
    assert lines[-1][4] == "DROPPED" and lines[-1][7] == ""


def test_pool_reuses_idle_connections_and_opens_one_per_request_in_flight():
    import asyncio

    import httpx

    from workloads.http_pool import LifoPoolTransport

    async def scenario(url: str) -> tuple[int, int, list[int]]:
        transport = LifoPoolTransport()
        async with httpx.AsyncClient(base_url=url, transport=transport, trust_env=False) as client:
            for _ in range(10):
                assert (await client.get("/v1/models")).status_code == 200
            sequential = transport.opened
            body = {"model": "ok", "inputs": [[0.0] * 3] * 2, "deadline_ms": 50}
            answers = await asyncio.gather(*(client.post("/v1/infer", json=body) for _ in range(12)))
            concurrent = transport.opened
            for _ in range(5):
                await client.get("/v1/models")
        return sequential, concurrent, [a.status_code for a in answers] + [transport.opened]

    with ReplayTestServer(delay_s=0.3) as server:
        sequential, concurrent, tail = asyncio.run(scenario(server.url))
    assert sequential == 1  # ten requests in a row share one connection
    assert concurrent == 12  # twelve in flight at once need twelve (the idle one plus eleven new)
    assert tail == [200] * 12 + [12]  # afterwards idle connections are reused, none opened
