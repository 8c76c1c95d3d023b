"""Dynamic batching: several queued documents in one forward pass (a tmd extension).

A lane takes up to `max_batch_size` documents from the queue (waiting at most
`max_batch_delay` for more once it holds one), answers cache hits at once, and runs the
rest as few forward passes as padding allows. Whether a model may be batched at all, and
how, is not assumed but measured once at load time (`probe`), on the warm-up document:

* `pad`: a padded row gives the same output as the row alone (the model honours the
  attention mask), so documents of different lengths share a pass, padded to the longest;
  `trim` says the output's dimension 1 follows the sequence length, so each document's
  slice is cut back to its own length (pass_through, NER, fill_mask, text_expansion shapes).
* `equal`: two copies in one pass match one alone, but padding changes the output (the
  model ignores the mask, e.g. Elasticsearch's tiny test models): only documents of equal
  length share a pass.
* `none`: the output's first dimension is not the batch (question answering's
  [2, spans, T]), or a batch of two does not match: every document runs alone, as before.

Everything here is a pure function of tensors and lengths, so it is tested directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# A group stops growing when more than this share of its padded tokens would be padding:
# sorting by length first keeps most groups far below it (the benchmark reports the waste).
MAX_PADDING_WASTE = 0.25
PROBE_PADDING = 3  # extra positions the probe pads the warm-up document with
PROBE_RTOL = 1e-4
PROBE_ATOL = 1e-5


class BatchMismatch(Exception):
    """The model's output cannot be split back into one part per document."""


@dataclass(frozen=True)
class BatchPlan:
    """How this model may be batched: `mode` is pad, equal or none (see the module doc)."""

    mode: str = "none"
    trim: bool = False
    reason: str = ""

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


NO_BATCHING = BatchPlan("none", False, "not probed")


def rows_of(prepared: Any) -> int:
    return int(prepared.inputs[0].size(0))


def width_of(prepared: Any) -> int:
    return int(prepared.inputs[0].size(-1))


def first_tensor(output: Any) -> Any:
    """What postprocess reads: the first element of a tuple/list output, or the output itself."""
    return output[0] if isinstance(output, (tuple, list)) else output


def split_output(output: Any, rows: Sequence[int], widths: Sequence[int], width: int, trim: bool) -> list[torch.Tensor]:
    """One part per document: its rows of dimension 0, cut to its own length on dimension 1 if `trim`."""
    out = first_tensor(output)
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.size(0) != sum(rows):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BatchMismatch(f"output {shape} has no dimension 0 of {sum(rows)} rows")
    parts = []
    start = 0
    for n, w in zip(rows, widths):
        part = out[start:start + n]
        if trim and w < width:
            part = part[:, :w]
        parts.append(part)
        start += n
    return parts


def plan_groups(widths: Sequence[int], rows: Sequence[int], mode: str, max_size: int,
                max_waste: float = MAX_PADDING_WASTE) -> list[list[int]]:
    """Indices of the documents of each forward pass: shortest first, at most `max_size` each.

    `equal` groups only equal lengths; `pad` lets a group grow while its padding stays within
    `max_waste` of its padded tokens; `none` gives every document its own pass.
    """
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    if mode == "none":
        return [[i] for i in order]
    groups: list[list[int]] = []
    current: list[int] = []
    real = total_rows = 0
    for i in order:
        if current:
            w = widths[i]
            padded = (total_rows + rows[i]) * w
            fits = len(current) < max_size and (
                w == widths[current[0]] if mode == "equal"
                else 1.0 - (real + rows[i] * w) / padded <= max_waste)
            if not fits:
                groups.append(current)
                current, real, total_rows = [], 0, 0
        current.append(i)
        real += rows[i] * widths[i]
        total_rows += rows[i]
    if current:
        groups.append(current)
    return groups


def _close(a: Any, b: Any) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.to(torch.float64), b.to(torch.float64), rtol=PROBE_RTOL, atol=PROBE_ATOL))


def probe(model: Callable[..., Any], collate: Callable[[Sequence[Any], int], tuple[torch.Tensor, ...]] | None,
          sample: Any) -> BatchPlan:
    """Measure how `model` may be batched, with the prepared warm-up document `sample`."""
    if collate is None:
        return BatchPlan("none", False, "the pipeline cannot collate documents")
    try:
        with torch.inference_mode():
            alone = first_tensor(model(*sample.inputs))
            rows, width = rows_of(sample), width_of(sample)
            pair = model(*collate([sample, sample], width))
            parts = split_output(pair, [rows, rows], [width, width], width, False)
            if not all(_close(part, alone) for part in parts):
                return BatchPlan("none", False, "two documents in one pass differ from one alone")
            padded_width = width + PROBE_PADDING
            padded = first_tensor(model(*collate([sample], padded_width)))
            trim = (isinstance(padded, torch.Tensor) and padded.dim() >= 2 and alone.dim() >= 2
                    and padded.size(1) == padded_width and alone.size(1) == width)
            part = split_output(padded, [rows], [width], padded_width, trim)[0]
    except BatchMismatch as err:
        return BatchPlan("none", False, str(err))
    except Exception as err:  # a model that cannot take a batch at all (fixed shapes, asserts)
        lines = [line for line in str(err).splitlines() if line.strip()]
        return BatchPlan("none", False, f"a batch of two failed: {lines[-1].strip() if lines else type(err).__name__}")
    if _close(part, alone):
        return BatchPlan("pad", trim, "padding leaves the output unchanged")
    return BatchPlan("equal", False, "padding changes the output: only equal lengths share a pass")
