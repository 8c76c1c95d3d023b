"""Elasticsearch byte-size and time-value strings.

Elasticsearch echoes a byte size back exactly as the user wrote it (`"10kb"`, `"0"`), so a
parsed value keeps its text next to its number. Units are 1024-based, as in Elasticsearch's
`ByteSizeValue`; time units follow `TimeValue` (`-1` means no limit).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tmd.api.errors import ParseError

_BYTE_UNITS = {"b": 1, "kb": 1 << 10, "k": 1 << 10, "mb": 1 << 20, "m": 1 << 20, "gb": 1 << 30,
               "g": 1 << 30, "tb": 1 << 40, "t": 1 << 40, "pb": 1 << 50, "p": 1 << 50}
_TIME_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class ByteSize:
    """A byte count and the text it was given as (echoed back in task_parameters.cache_size)."""

    bytes: int
    text: str

    @classmethod
    def of_bytes(cls, n: int) -> "ByteSize":
        """The form Elasticsearch writes for a defaulted size: `"1630b"`, or `"0"` for zero."""
        return cls(n, "0" if n == 0 else f"{n}b")

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class TimeValue:
    """A duration; `seconds` is None for `-1` (wait forever)."""

    seconds: float | None
    text: str

    def __str__(self) -> str:
        return self.text


def parse_byte_size(value: str | int, setting: str) -> ByteSize:
    """Parse `0`, `10kb`, `1.5mb`; a bare number other than 0 lacks a unit and is rejected, as in Elasticsearch."""
    if isinstance(value, bool):
        raise ParseError(f"failed to parse setting [{setting}] with value [{value}] as a size in bytes")
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("0", "-1"):
        if lowered == "-1":
            raise ParseError(f"failed to parse setting [{setting}] with value [{text}] as a size in bytes")
        return ByteSize(0, text)
    match = re.fullmatch(_NUMBER + r"\s*(b|kb|k|mb|m|gb|g|tb|t|pb|p)", lowered)
    if not match:
        raise ParseError(
            f"failed to parse setting [{setting}] with value [{text}] as a size in bytes: "
            "unit is missing or unrecognized"
        )
    number, unit = match.groups()
    return ByteSize(int(math.floor(float(number) * _BYTE_UNITS[unit])), text)


def parse_time_value(value: str | int | float, setting: str) -> TimeValue:
    """Parse `30s`, `1m`, `500ms`, `-1`; a bare number is rejected as Elasticsearch does."""
    text = str(value).strip()
    if text == "-1":
        return TimeValue(None, text)
    if text == "0":
        return TimeValue(0.0, text)
    match = re.fullmatch(_NUMBER + r"\s*(nanos|micros|ms|s|m|h|d)", text.lower())
    if not match:
        raise ParseError(
            f"failed to parse setting [{setting}] with value [{text}] as a time value: "
            "unit is missing or unrecognized"
        )
    number, unit = match.groups()
    return TimeValue(float(number) * _TIME_UNITS[unit], text)
