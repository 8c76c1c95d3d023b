"""Label and field selectors (k8s.io/apimachinery/pkg/labels and pkg/fields), parsed once per request.

Hand-written because no maintained Python library implements the Kubernetes selector grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import StatusError, bad_request
from .meta import LABEL_VALUE, validate_qualified_name


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # = != in notin exists !
    values: tuple[str, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op in ("=", "==", "in"):
            return self.key in labels and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return self.key not in labels or labels[self.key] not in self.values
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("gt", "lt"):
            try:
                have = int(labels[self.key])
            except (KeyError, ValueError):
                return False
            return have > int(self.values[0]) if self.op == "gt" else have < int(self.values[0])
        return False


TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"unable to parse requirement: {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_label_selector(text: str) -> list[Requirement]:
    """Full grammar: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`; comma = AND."""
    reqs: list[Requirement] = []
    if not text or not text.strip():
        return reqs
    toks = _tokens(text.replace(">", " gt ").replace("<", " lt "))
    i = 0

    def err(msg: str) -> StatusError:
        return bad_request(f"unable to parse requirement: {msg}")

    while i < len(toks):
        if toks[i] == "!":
            if i + 1 >= len(toks):
                raise err("found '', expected: identifier")
            key = toks[i + 1]
            _check_key(key)
            reqs.append(Requirement(key, "!", ()))
            i += 2
        else:
            key = toks[i]
            if key in ("=", "==", "!=", "(", ")", ","):
                raise err(f"found '{key}', expected: !, identifier, or 'end of string'")
            _check_key(key)
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append(Requirement(key, "exists", ()))
            elif toks[i] in ("=", "==", "!="):
                op = toks[i]
                i += 1
                value = ""
                if i < len(toks) and toks[i] not in (",",):
                    value = toks[i]
                    i += 1
                _check_value(value)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif toks[i] in ("in", "notin"):
                op = toks[i]
                i += 1
                if i >= len(toks) or toks[i] != "(":
                    raise err(f"found '{toks[i] if i < len(toks) else ''}', expected: '('")
                i += 1
                values: list[str] = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        _check_value(toks[i])
                        values.append(toks[i])
                    i += 1
                if i >= len(toks):
                    raise err("found '', expected: ')'")
                i += 1
                if op == "in" and not values:
                    raise bad_request("for 'in', 'notin' operators, values set can't be empty")
                reqs.append(Requirement(key, op, tuple(values)))
            elif toks[i] in ("gt", "lt"):
                op = toks[i]
                i += 1
                if i >= len(toks) or not toks[i].lstrip("-").isdigit():
                    raise err("for 'Gt', 'Lt' operators, the value must be an integer")
                reqs.append(Requirement(key, op, (toks[i],)))
                i += 1
            else:
                raise err(f"found '{toks[i]}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise err(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
            if i >= len(toks):
                raise err("found '', expected: !, identifier")
    return reqs


def _check_key(key: str) -> None:
    errs = validate_qualified_name(key, "key")
    if errs:
        raise bad_request(f"unable to parse requirement: <nil>: Invalid value: {key!r}: {errs[0].detail}")


def _check_value(value: str) -> None:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        raise bad_request(f"unable to parse requirement: values[0]: Invalid value: \"{value}\": "
                          "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                          "or '.', and must start and end with an alphanumeric character")


def label_matcher(text: str | None) -> Callable[[dict[str, Any]], bool] | None:
    if not text:
        return None
    reqs = parse_label_selector(text)
    if not reqs:
        return None

    def match(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)
    return match


def parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    """`a=b,c!=d` → [(field, op, value)]; `\\,` and `\\=` escapes are honoured."""
    out: list[tuple[str, str, str]] = []
    if not text or not text.strip():
        return out
    parts: list[str] = []
    cur = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if ch == ",":
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    for part in parts:
        m = re.match(r"^(.*?)(!=|==|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1), m.group(2), m.group(3)
        value = re.sub(r"\\(.)", r"\1", value)
        out.append((field.strip(), "!=" if op == "!=" else "=", value))
    return out
