"""Route choice: least outstanding documents per allocation, contiguous slices in order; workers
that could not be reached left out for a while, and a failed slice retried elsewhere."""

from __future__ import annotations

from hypothesis import given, strategies as st

from tmd.shim.routing import Target, choose, fallback, reachable, split_docs, started_targets


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


def test_unreachable_targets_are_left_out_for_the_hold_only():
    a, b = Target("a", "a:1", 1), Target("b", "b:1", 1)
    assert reachable([a, b], {"a:1": 10.0}, now=11.0, hold=2.0) == [b]
    assert reachable([a, b], {"a:1": 10.0}, now=12.0, hold=2.0) == [a, b]  # held for `hold` seconds, no longer
    assert reachable([a, b], {"c:1": 11.0}, now=11.0, hold=2.0) == [a, b]


def test_when_every_target_is_unreachable_all_are_tried():
    a, b = Target("a", "a:1", 1), Target("b", "b:1", 1)
    assert reachable([a, b], {"a:1": 10.0, "b:1": 10.5}, now=11.0, hold=2.0) == [a, b]
    assert reachable([], {}, now=0.0, hold=2.0) == []


def test_fallback_is_another_target_chosen_by_load():
    a, b, c = Target("a", "a:1", 1), Target("b", "b:1", 1), Target("c", "c:1", 2)
    assert fallback([a], a, {}) is None
    assert fallback([a, b], a, {}) == b
    assert fallback([a, b, c], c, {"a:1": 3}) == b
    assert fallback([a, b, c], a, {"c:1": 1}) == c  # (1+1)/2 = 1 = (0+1)/1, more allocations win


@given(allocs=st.lists(st.integers(1, 4), min_size=1, max_size=5), failed=st.integers(0, 4),
       load=st.dictionaries(st.sampled_from([f"n{i}:1" for i in range(5)]), st.integers(0, 50)))
def test_fallback_never_returns_the_failed_target(allocs, failed, load):
    targets = [Target(f"n{i}", f"n{i}:1", k) for i, k in enumerate(allocs)]
    bad = targets[failed % len(targets)]
    retry = fallback(targets, bad, load)
    assert (retry is None) == (len(targets) == 1)
    assert retry is None or (retry in targets and retry.address != bad.address)
