"""Fault tests record how long the system took to recover from each fault; the figures are
printed at the end of the run (they are measurements, not assertions: see benchmarks/ for goals)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

_RECOVERIES: list[dict[str, object]] = []


@pytest.fixture
def record_recovery(request) -> Callable[..., None]:
    """`record_recovery(fault, seconds, **details)`: keep a recovery time for the summary (and
    for the JSON file named by TMD_FAULT_REPORT, when set)."""
    def record(fault: str, seconds: float, **details: object) -> None:
        _RECOVERIES.append({"test": request.node.name, "fault": fault, "recovery_s": round(seconds, 3), **details})
    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not _RECOVERIES:
        return
    terminalreporter.section("fault recovery times")
    for r in _RECOVERIES:
        details = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("test", "fault", "recovery_s"))
        terminalreporter.write_line(f"{r['fault']}: {r['recovery_s']:.2f} s" + (f" ({details})" if details else ""))
    path = os.environ.get("TMD_FAULT_REPORT")
    if path:
        Path(path).write_text(json.dumps(_RECOVERIES, indent=2))
