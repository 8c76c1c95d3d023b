"""The text a document carries (es-api.md §5.4 step 1) and the tensors a model takes (§8.3)."""

from __future__ import annotations

import json
from typing import Any

import torch

from tmd.api.errors import StatusException
from tmd.worker.nlp.tokenization import Encoding, NlpTokenizer

_MISSING = object()


def extract_text(doc: dict[str, Any], field: str) -> str:
    """The input field's value; dotted paths reach into objects, as Elasticsearch's MapHelper.dig does."""
    value = _dig(doc, field) if isinstance(doc, dict) else _MISSING
    if value is _MISSING:
        raise StatusException(f"Input field [{field}] does not exist in the source document", 400)
    if not isinstance(value, str):
        raise StatusException(f"Input value [{java_string(value)}] for field [{field}] must be a string", 400)
    return value


def _dig(doc: dict[str, Any], path: str) -> Any:
    if path in doc:
        return doc[path]
    parts = path.split(".")
    # a key may itself contain dots: try every split of the path, longest first key first
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        child = doc.get(head, _MISSING)
        if isinstance(child, dict):
            found = _dig(child, ".".join(parts[i:]))
            if found is not _MISSING:
                return found
    return _MISSING


def java_string(value: Any) -> str:
    """How Java's String.valueOf prints a parsed JSON value, which Elasticsearch's messages embed."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(java_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return json.dumps(value)
    return str(value)


def build_inputs(encodings: list[Encoding], tokenizer: NlpTokenizer) -> tuple[torch.Tensor, ...]:
    """`tokens, arg_1, arg_2, arg_3` as int64 [rows, maxLen] tensors for this tokenizer family.

    arg_1 is the attention mask (1 per real token and, as Elasticsearch writes it, the pad
    token id in padding), arg_2 token types (all 0), arg_3 positions; mpnet and the roberta
    family take only arg_1, deberta_v2 arg_1 and arg_2 (§8.3).
    """
    if len(encodings) == 1:  # the common case, built without padding arithmetic
        tokens = torch.tensor([encodings[0].ids], dtype=torch.int64)
        args = [tokens, torch.ones_like(tokens)]
        if tokenizer.num_extra_args >= 2:
            args.append(torch.zeros_like(tokens))
        if tokenizer.num_extra_args >= 3:
            args.append(torch.arange(tokens.size(1), dtype=torch.int64).unsqueeze(0))
        return tuple(args)
    width = max(len(e.ids) for e in encodings)
    pad = tokenizer.pad_id
    tokens = torch.full((len(encodings), width), pad, dtype=torch.int64)
    mask = torch.full((len(encodings), width), pad, dtype=torch.int64)
    for row, enc in enumerate(encodings):
        n = len(enc.ids)
        tokens[row, :n] = torch.tensor(enc.ids, dtype=torch.int64)
        mask[row, :n] = 1
    args = [tokens, mask]
    if tokenizer.num_extra_args >= 2:
        args.append(torch.zeros((len(encodings), width), dtype=torch.int64))
    if tokenizer.num_extra_args >= 3:
        args.append(torch.arange(width, dtype=torch.int64).unsqueeze(0).expand(len(encodings), width).contiguous())
    return tuple(args)


def collate(inputs: list[tuple[torch.Tensor, ...]], width: int, pad_id: int) -> tuple[torch.Tensor, ...]:
    """Several documents' inputs stacked into one batch of `width` positions (dynamic batching).

    Each document's own rows are copied unchanged; the positions added beyond them hold the pad
    token, attention 0 (a padded position must not be attended to, whatever the model's pad id),
    token type 0 and, for positions, the continued 0..width-1 range.
    """
    rows = sum(int(x[0].size(0)) for x in inputs)
    out: list[torch.Tensor] = []
    for arg in range(len(inputs[0])):
        if arg == 3:
            out.append(torch.arange(width, dtype=torch.int64).unsqueeze(0).expand(rows, width).contiguous())
            continue
        batch = torch.full((rows, width), pad_id if arg == 0 else 0, dtype=torch.int64)
        row = 0
        for x in inputs:
            part = x[arg]
            batch[row:row + part.size(0), :part.size(1)] = part
            row += part.size(0)
        out.append(batch)
    return tuple(out)
