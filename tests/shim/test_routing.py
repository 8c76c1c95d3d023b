"""Route choice: least outstanding documents per allocation, contiguous slices in order."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tmd.shim.routing import Target, choose, split_docs, started_targets


def deployment(table):
    return {"status": {"routing_table": table}}


def test_only_started_routes_with_allocations_and_an_address():
    table = {"a": {"routing_state": "started", "current_allocations": 2},
             "b": {"routing_state": "starting", "current_allocations": 0},
             "c": {"routing_state": "started", "current_allocations": 0},
             "d": {"routing_state": "started", "current_allocations": 1}}
    targets = started_targets(deployment(table), {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}, 8080)
    assert targets == [Target("a", "10.0.0.1:8080", 2)]


def test_stopping_routes_when_none_started():
    table = {"a": {"routing_state": "stopping", "current_allocations": 1}}
    assert started_targets(deployment(table), {"a": "ip"}, 1) == [Target("a", "ip:1", 1)]
    assert started_targets(deployment({}), {}, 1) == []


def test_choose_prefers_fewest_outstanding_per_allocation():
    a, b = Target("a", "a:1", 1), Target("b", "b:1", 3)
    assert choose([a, b], {}) == b  # ties on load go to more allocations
    assert choose([a, b], {"b:1": 5}) == a  # (5+1)/3 = 2 > (0+1)/1
    assert choose([a, b], {"a:1": 1, "b:1": 2}) == b


@given(n=st.integers(1, 200), allocs=st.lists(st.integers(1, 8), min_size=1, max_size=5))
def test_split_covers_every_doc_in_order_and_balances_by_allocation(n, allocs):
    targets = [Target(f"n{i}", f"n{i}:1", k) for i, k in enumerate(allocs)]
    slices = split_docs(n, targets, {})
    assert [s[1] for s in slices][0] == 0
    assert all(a[2] == b[1] for a, b in zip(slices, slices[1:]))
    assert slices[-1][2] == n
    share = {t: b - a for t, a, b in slices}
    total = sum(allocs)
    for t in targets:  # within one document of the allocation-proportional share
        assert abs(share.get(t, 0) - n * t.allocations / total) <= 1 + len(targets)
