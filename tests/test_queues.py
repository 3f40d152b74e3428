from hypothesis import given
from hypothesis import strategies as st

from scheduler.queues import RequestQueue
from tests.core_helpers import req


def test_fifo_views_and_head_removal():
    q = RequestQueue("A")
    rs = [req(str(i), "A", i * 0.001, 10 + i) for i in range(200)]
    for r in rs:
        q.push(r)
    assert len(q) == 200 and q.head(2) == (rs[0], rs[1])
    q.remove(rs[:150])  # forces a compaction
    assert list(q) == rs[150:]
    assert list(q.arrival_s) == [r.arrival_s for r in rs[150:]]
    assert list(q.deadline_s) == [r.deadline_s for r in rs[150:]]
    assert q.min_deadline_s(3) == rs[150].deadline_s


@given(st.lists(st.booleans(), min_size=1, max_size=300), st.integers(0, 300))
def test_arbitrary_removal_keeps_order_and_views(keep_mask, extra):
    q = RequestQueue("A")
    rs = [req(str(i), "A", float(i), 5.0 + (i * 7919) % 13) for i in range(len(keep_mask))]
    for r in rs:
        q.push(r)
    q.remove([r for r, k in zip(rs, keep_mask) if not k])
    kept = [r for r, k in zip(rs, keep_mask) if k]
    more = [req(f"x{i}", "A", 1e6 + i, 5.0) for i in range(extra)]
    for r in more:
        q.push(r)
    assert list(q) == kept + more
    assert list(q.arrival_s) == [r.arrival_s for r in kept + more]
    assert list(q.deadline_s) == [r.deadline_s for r in kept + more]
    if kept + more:
        n = min(len(q), 20)
        assert q.min_deadline_s(n) == min(r.deadline_s for r in (kept + more)[:n])


def test_clear_returns_everything():
    q = RequestQueue("A")
    rs = [req(str(i), "A", float(i), 5.0) for i in range(3)]
    for r in rs:
        q.push(r)
    assert q.clear() == rs and len(q) == 0 and not q
