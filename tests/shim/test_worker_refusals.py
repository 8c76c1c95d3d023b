"""Which worker refusals the shim may send elsewhere: only those that say nothing ran, in the
worker's own words (tied to the worker's texts, so a change there fails here)."""

from __future__ import annotations

from tmd.shim.service import nothing_ran
from tmd.worker.queue import SHUT_DOWN


def test_a_draining_or_loading_worker_ran_nothing():
    assert nothing_ran(429, SHUT_DOWN)
    assert nothing_ran(409, "[my_deployment] process context missing")


def test_other_refusals_are_the_clients_answer():
    assert not nothing_ran(429, "inference process queue is full. Unable to execute command")
    assert not nothing_ran(408, "timeout [10s] waiting for inference result")
    assert not nothing_ran(400, "[my_deployment] process context missing")
    assert not nothing_ran(500, SHUT_DOWN)
