"""Per-task encoding and result processing (es-api.md §5.6).

Each task turns the document text into one or more encodings (rows of the model's batch)
and turns the model's output, seen as Elasticsearch's 3-D wire array, into the result
Elasticsearch returns for that task.
"""

from __future__ import annotations

import struct
from typing import Any

import torch

from tmd.api.errors import ElasticsearchError, IllegalArgument, StatusException, ValidationFailed
from tmd.api.trained_model import (
    FillMaskConfig,
    NerConfig,
    NlpConfig,
    QuestionAnsweringConfig,
    TextClassificationConfig,
    TextEmbeddingConfig,
    TextSimilarityConfig,
    ZeroShotClassificationConfig,
    bad_request,
    iob_tag,
)
from tmd.worker.nlp.tokenization import Encoding, NlpTokenizer


def to_rows(output: torch.Tensor) -> torch.Tensor:
    """The model output as pytorch_inference writes it: always 3-D, float64 (§5.6 wire format).

    A scalar becomes [[[x]]], a vector [[[...]]], a 2-D [batch, dim] output is wrapped in one
    extra array, a 3-D output is kept.
    """
    out = output.detach().to(torch.float64)
    while out.dim() < 3:
        out = out.unsqueeze(0)
    if out.dim() > 3:
        raise ElasticsearchError(f"Error in inference process: [unexpected output with {out.dim()} dimensions]")
    return out


def float32_json(value: float) -> float:
    """The shortest decimal that reads back as the same float32, as Java prints a `float`.

    Text-expansion weights are floats in Elasticsearch, so 0.1 prints as 0.1, not as the
    float64 expansion of the float32 nearest to it (0.10000000149011612).
    """
    exact = struct.pack("<f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == exact:
            return candidate
    return value


def softmax(values: torch.Tensor) -> torch.Tensor:
    return torch.softmax(values.to(torch.float64), dim=-1)


class TaskProcessor:
    """Encoding and result processing for one task type."""

    # whether the result quotes the input text (then the cache key must include it)
    result_uses_text = False

    def check_config(self, config: NlpConfig, tokenizer: NlpTokenizer) -> None:
        """Load-time checks of the stored config against the tokenizer."""

    def check_request(self, config: NlpConfig) -> None:
        """Checks of the effective (stored + request override) config before tokenizing."""

    def encode(self, config: NlpConfig, tokenizer: NlpTokenizer, text: str) -> list[Encoding]:
        """The rows of the model's batch for this document."""
        # Tasks that read one result per document keep only the first window of a spanned
        # input, as Elasticsearch's processors read only the first (`TODO only the first entry`).
        tok = config.tokenization
        return tokenizer.encode(text, truncate=tok.truncate, span=tok.span)[:1]

    def process(self, config: NlpConfig, tokenizer: NlpTokenizer, prepared: Any, rows: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError


class PassThrough(TaskProcessor):
    """The first batch element of the output as a 2-D array of doubles."""

    def process(self, config, tokenizer, prepared, rows):
        return {config.results_key: rows[0].tolist()}


class TextEmbedding(TaskProcessor):
    """The first row of the first batch element: one vector."""

    def process(self, config: TextEmbeddingConfig, tokenizer, prepared, rows):
        return {config.results_key: rows[0][0].tolist()}


class TextExpansion(TaskProcessor):
    """Vocabulary tokens with a positive weight (rows max-pooled), heaviest first.

    Dots in tokens become `__`, as Elasticsearch does so the tokens can be field names.
    """

    def process(self, config, tokenizer, prepared, rows):
        weights = rows[0].max(dim=0).values.to(torch.float32)
        vocab = tokenizer.vocab_list
        picked = [i for i in torch.nonzero(weights > 0).flatten().tolist() if i < len(vocab)]
        picked.sort(key=lambda i: -float(weights[i]))  # stable: ties keep vocabulary order
        return {config.results_key: {vocab[i].replace(".", "__"): float32_json(float(weights[i])) for i in picked}}


def _top_classes(labels: list[str], probs: torch.Tensor, limit: int) -> tuple[list[int], list[dict[str, Any]]]:
    order = sorted(range(len(labels)), key=lambda i: -float(probs[i]))
    top = [{"class_name": labels[i], "class_probability": float(probs[i]), "class_score": float(probs[i])}
           for i in order[:max(limit, 0)]]
    return order, top


def _classification(config: NlpConfig, label: str, top: list[dict[str, Any]], probability: float) -> dict[str, Any]:
    result: dict[str, Any] = {config.results_key: label}
    if top:
        result["top_classes"] = top
    result["prediction_probability"] = probability
    return result


class TextClassification(TaskProcessor):
    """Softmax over the first row's logits, one per classification label."""

    def process(self, config: TextClassificationConfig, tokenizer, prepared, rows):
        labels = list(config.classification_labels or [])
        logits = rows[0][0]
        if logits.numel() != len(labels):
            raise StatusException(f"Expected exactly [{len(labels)}] values in text classification result; "
                                  f"got [{logits.numel()}]", 500)
        probs = softmax(logits)
        limit = len(labels) if config.num_top_classes < 0 else config.num_top_classes
        order, top = _top_classes(labels, probs, limit)
        return _classification(config, labels[order[0]], top, float(probs[order[0]]))


class ZeroShotClassification(TaskProcessor):
    """One premise/hypothesis pair per candidate label, scored by the model's entailment logit."""

    def check_config(self, config: ZeroShotClassificationConfig, tokenizer):
        # ZeroShotClassificationProcessor's constructor check: both positions must exist
        _ = (config.entailment_index, config.contradiction_index)

    def check_request(self, config: ZeroShotClassificationConfig):
        if not config.labels:
            raise bad_request("zero_shot_classification requires non-empty [labels]")

    def encode(self, config: ZeroShotClassificationConfig, tokenizer, text):
        premise = tokenizer.tokenize(text)
        encodings = []
        for label in config.labels or []:
            hypothesis = config.hypothesis_template.replace("{}", label, 1)
            encodings += tokenizer.encode_pair(text, hypothesis, truncate=config.tokenization.truncate, span=-1,
                                               first_piece=premise)
        return encodings

    def process(self, config: ZeroShotClassificationConfig, tokenizer, prepared, rows):
        labels = list(config.labels or [])
        scores = rows[0]
        if scores.size(0) != len(labels):
            raise StatusException(f"Expected exactly [{len(labels)}] values in zero shot classification result; "
                                  f"got [{scores.size(0)}]", 409)
        if scores.size(1) != 3:
            raise StatusException("Expected exactly [3] values in inner zero shot classification result; "
                                  f"got [{scores.size(1)}]", 409)
        ent, con = config.entailment_index, config.contradiction_index
        if config.multi_label:
            probs = softmax(torch.stack([scores[:, ent], scores[:, con]], dim=1))[:, 0]
        else:
            probs = softmax(scores[:, ent])
        order, top = _top_classes(labels, probs, len(labels))
        return _classification(config, labels[order[0]], top, float(probs[order[0]]))


class FillMask(TaskProcessor):
    """The vocabulary distribution at the one mask token."""

    result_uses_text = True

    def check_config(self, config: FillMaskConfig, tokenizer):
        if tokenizer.mask_id is None:
            raise IllegalArgument(f"vocabulary is missing the mask token [{tokenizer.mask_token}]")

    def encode(self, config, tokenizer, text):
        # FillMaskProcessor.validateInputs: a missing mask is a validation error, a second one a bad request
        mask = tokenizer.mask_token
        first = text.find(mask)
        if first < 0:
            error = ValidationFailed([f"no {mask} token could be found in the input"])
            error.type = "validation_exception"
            raise error
        if text.find(mask, first + len(mask)) > 0:
            raise bad_request(f"only one {mask} token should exist in the input")
        return super().encode(config, tokenizer, text)

    def process(self, config: FillMaskConfig, tokenizer, prepared, rows):
        enc = prepared.encodings[0]
        if tokenizer.mask_id not in enc.ids:
            raise IllegalArgument(f"no {tokenizer.mask_token} token could be found in the input")
        position = enc.ids.index(tokenizer.mask_id)
        logits = rows[0][position]
        probs = softmax(logits)
        k = min(max(config.num_top_classes, 1), probs.numel())
        values, indices = torch.topk(probs, k)
        tokens = [tokenizer.decode_token(int(i)) if int(i) < len(tokenizer.vocab_list) else str(int(i))
                  for i in indices.tolist()]
        top = [{"class_name": t, "class_probability": float(p), "class_score": float(p)}
               for t, p in zip(tokens, values.tolist())] if config.num_top_classes > 0 else []
        result = _classification(config, tokens[0], top, float(values[0]))
        result[f"{config.results_key}_sequence"] = prepared.text.replace(tokenizer.mask_token, tokens[0].strip())
        return result


class Ner(TaskProcessor):
    """Per-token I-O-B tags, averaged over each word's sub-tokens, grouped into entities."""

    result_uses_text = True

    def process(self, config: NerConfig, tokenizer, prepared, rows):
        enc = prepared.encodings[0]
        labels = config.labels
        scores = rows[0][: len(enc.ids)]
        if scores.size(1) != len(labels):
            raise StatusException(f"Expected exactly [{len(labels)}] values in ner result; got [{scores.size(1)}]",
                                  500)
        probs = softmax(scores)
        tags = [iob_tag(label) for label in labels]
        words = _tag_words(enc, probs, tags)
        text = prepared.text
        source = text.lower() if config.tokenization.do_lower_case else text
        entities = []
        i = 0
        while i < len(words):
            start, end, (prefix, entity), score = words[i]
            if prefix == "O":
                i += 1
                continue
            j, total = i + 1, score
            while j < len(words) and words[j][2][0] != "B" and words[j][2][1] == entity:
                total += words[j][3]
                j += 1
            start_pos, end_pos = start, words[j - 1][1]
            entities.append({"entity": source[start_pos:end_pos], "class_name": entity,
                             "class_probability": total / (j - i), "start_pos": start_pos, "end_pos": end_pos})
            i = j
        return {config.results_key: _annotate(text, entities), "entities": entities}


def _tag_words(enc: Encoding, probs: torch.Tensor, tags: list[tuple[str, str] | None]) -> list[tuple]:
    """(start, end, tag, score) per input word: sub-token probabilities averaged, then argmax."""
    words = []
    i = 0
    n = len(enc.ids)
    while i < n:
        word = enc.word_ids[i]
        if word < 0 or enc.sequence_ids[i] < 0:
            i += 1
            continue
        j = i
        while j + 1 < n and enc.word_ids[j + 1] == word and enc.sequence_ids[j + 1] >= 0:
            j += 1
        avg = probs[i: j + 1].mean(dim=0)
        best = int(torch.argmax(avg))
        words.append((enc.offsets[i][0], enc.offsets[j][1], tags[best], float(avg[best])))
        i = j + 1
    return words


def _annotate(text: str, entities: list[dict[str, Any]]) -> str:
    """`[Josh](PER&Josh) lives in [New York](LOC&New+York)` (NerProcessor.buildAnnotatedText)."""
    out, cur = [], 0
    for e in entities:
        start, end = e["start_pos"], e["end_pos"]
        out.append(text[cur:start])
        span = text[start:end]
        out.append(f"[{span}]({e['class_name']}&{span.replace(' ', '+')})")
        cur = end
    out.append(text[cur:])
    return "".join(out)


class QuestionAnswering(TaskProcessor):
    """The best context span by start × end probability, over every window of the context."""

    result_uses_text = True

    def check_request(self, config: QuestionAnsweringConfig):
        if config.question is None:
            raise bad_request("Question is required for question answering")

    def encode(self, config: QuestionAnsweringConfig, tokenizer, text):
        tok = config.tokenization
        return tokenizer.encode_pair(config.question or "", text, truncate=tok.truncate, span=tok.span)

    def process(self, config: QuestionAnsweringConfig, tokenizer, prepared, rows):
        spans = len(prepared.encodings)
        starts, ends = _start_end_rows(rows, spans)
        k = max(config.num_top_classes, 1)
        candidates: list[tuple[float, int, int, int]] = []
        for span_index, enc in enumerate(prepared.encodings):
            n = len(enc.ids)
            in_context = torch.tensor([sid == 1 for sid in enc.sequence_ids])
            # the softmax runs over [CLS] and the context (QuestionAnsweringProcessor.topScores), then
            # [CLS] is dropped as an answer position
            allowed = in_context.clone()
            allowed[0] = True
            s = _masked_softmax(starts[span_index][:n], allowed)
            e = _masked_softmax(ends[span_index][:n], allowed)
            s[0] = e[0] = 0.0
            # scores[i, d] = s[i] · e[i + d] for answer lengths d < max_answer_length: a band, not n × n
            width = config.max_answer_length
            e_band = torch.cat([e, torch.zeros(width, dtype=e.dtype)]).unfold(0, width, 1)[:n]
            ctx_band = torch.cat([in_context, torch.zeros(width, dtype=torch.bool)]).unfold(0, width, 1)[:n]
            valid = in_context.unsqueeze(1) & ctx_band
            scores = torch.where(valid, s.unsqueeze(1) * e_band, torch.tensor(-1.0, dtype=s.dtype))
            best = torch.topk(scores.flatten(), min(k, scores.numel()))
            for score, flat in zip(best.values.tolist(), best.indices.tolist()):
                if score >= 0:
                    start = flat // width
                    candidates.append((score, span_index, start, start + flat % width))
        if not candidates:
            return _qa_result(config, "", 0, 0, 0.0, [])
        candidates.sort(key=lambda c: -c[0])
        top = []
        for score, span_index, i, j in candidates[:k]:
            enc = prepared.encodings[span_index]
            start, end = enc.offsets[i][0], enc.offsets[j][1]
            top.append({"answer": prepared.text[start:end], "score": score, "start_offset": start, "end_offset": end})
        best = top[0]
        return _qa_result(config, best["answer"], best["start_offset"], best["end_offset"], best["score"],
                          top if config.num_top_classes > 0 else [])


def _start_end_rows(rows: torch.Tensor, spans: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Start and end logits per span from either [2, spans, T] or interleaved [2*spans, 1, T]."""
    if rows.size(0) == 2 and rows.size(1) == spans:
        return [rows[0][i] for i in range(spans)], [rows[1][i] for i in range(spans)]
    if rows.size(0) == 2 * spans and rows.size(1) == 1:
        return [rows[2 * i][0] for i in range(spans)], [rows[2 * i + 1][0] for i in range(spans)]
    raise StatusException("question answering result has invalid dimensions; expected start and end logits for "
                          f"[{spans}] spans, got shape {list(rows.shape)}", 409)


def _masked_softmax(values: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    masked = torch.where(allowed, values.to(torch.float64), torch.tensor(-10000.0, dtype=torch.float64))
    return softmax(masked)


def _qa_result(config: NlpConfig, answer: str, start: int, end: int, score: float,
               top: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {config.results_key: answer, "start_offset": start, "end_offset": end}
    if top:
        result["top_classes"] = top
    result["prediction_probability"] = score
    return result


class TextSimilarity(TaskProcessor):
    """The model's score for (query text, document), windows combined by max or mean."""


    def check_request(self, config: TextSimilarityConfig):
        if config.text is None:
            raise bad_request("Text is required for text similarity")

    def encode(self, config: TextSimilarityConfig, tokenizer, text):
        tok = config.tokenization
        return tokenizer.encode_pair(config.text or "", text, truncate=tok.truncate, span=tok.span)

    def process(self, config: TextSimilarityConfig, tokenizer, prepared, rows):
        scores = rows[0][: len(prepared.encodings), 0]
        combined = scores.mean() if config.span_score_combination_function == "mean" else scores.max()
        return {config.results_key: float(combined)}


TASKS: dict[str, TaskProcessor] = {
    "pass_through": PassThrough(),
    "text_embedding": TextEmbedding(),
    "text_expansion": TextExpansion(),
    "ner": Ner(),
    "text_classification": TextClassification(),
    "zero_shot_classification": ZeroShotClassification(),
    "fill_mask": FillMask(),
    "question_answering": QuestionAnswering(),
    "text_similarity": TextSimilarity(),
}
