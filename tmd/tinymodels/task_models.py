"""Tiny BERT-style task models whose weights are set from word lists, so answers mean something.

Each is a TorchScript module with the BERT calling convention `forward(input_ids,
attention_mask, token_type_ids=None, position_ids=None)` (so it serves bert tokenization's
four inputs and mpnet/roberta's two) and the output shape its task's result processor
reads (es-api.md §5.6). No training: a lookup table per token, plus a little arithmetic
over the sequence where the task needs context (NLI, fill-mask, QA).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from tmd.tinymodels.builders import TinyModel, model_config
from tmd.tinymodels.vocab import (
    BASE_VOCABULARY,
    MISC,
    MPNET_VOCABULARY,
    NEGATIVE,
    ORGS,
    PEOPLE,
    PLACES,
    POSITIVE,
    TOPICS,
    vocabulary_body,
)

NER_LABELS = ["O", "B_MISC", "I_MISC", "B_PER", "I_PER", "B_ORG", "I_ORG", "B_LOC", "I_LOC"]
SENTIMENT_LABELS = ["negative", "positive"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]
# second words of multi-word entities: tagged I_ after their first word
_CONTINUATIONS = {"york": "I_LOC"}
_SECOND_WORDS = {"new": "B_LOC"}
# Sentences the fill-mask model learns its next-word and co-occurrence tables from.
FILL_MASK_CORPUS = [
    "the capital of france is paris",
    "the capital of germany is berlin",
    "paris is a city in france",
    "berlin is a city in germany",
    "london is a city in england",
    "i love pizza and pasta",
    "the football team won the match",
    "the president won the election",
    "she works at google in london",
    "he lives in tokyo",
]
_STOP = {"the", "a", "an", "is", "of", "in", "and", "at", "i", "he", "she", "it", "to"}


def _vocab_for(tokenization: str) -> list[str]:
    """The word-level vocabulary the lookup tables index (the task models key on whole words)."""
    if tokenization not in ("bert", "mpnet"):
        raise ValueError(f"the tiny task models use WordPiece vocabularies (bert or mpnet), not [{tokenization}]")
    return MPNET_VOCABULARY if tokenization == "mpnet" else BASE_VOCABULARY


def _specials(tokenization: str) -> tuple[str, str]:
    """(start, separator) tokens for the family."""
    return ("<s>", "</s>") if tokenization == "mpnet" else ("[CLS]", "[SEP]")


def _index(vocab: list[str]) -> dict[str, int]:
    return {t: i for i, t in enumerate(vocab)}


def _config(model_id: str, task: str, options: dict[str, Any], tokenization: str,
            tokenization_options: dict[str, Any] | None) -> dict[str, Any]:
    return model_config(model_id, task, options, tokenization=tokenization,
                        tokenization_options={"do_lower_case": True, **(tokenization_options or {})})


# --------------------------------------------------------------------------- ner


class TokenTagger(nn.Module):
    """Per-token logits from a [vocab, labels] table: [batch, seq, labels]."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        return self.table[input_ids.clamp(0, self.table.size(0) - 1)]


def ner(model_id: str = "tiny_ner", *, tokenization: str = "bert",
        tokenization_options: dict[str, Any] | None = None) -> TinyModel:
    """People → PER, places → LOC ("new york" → B_LOC I_LOC), companies → ORG, languages → MISC."""
    vocab = _vocab_for(tokenization)
    index = _index(vocab)
    table = torch.zeros((len(vocab), len(NER_LABELS)))
    table[:, 0] = 3.0  # O by default
    tagged = {**{w: "B_PER" for w in PEOPLE}, **{w: "B_LOC" for w in PLACES}, **{w: "B_ORG" for w in ORGS},
              **{w: "B_MISC" for w in MISC}, **_SECOND_WORDS, **_CONTINUATIONS}
    for word, label in tagged.items():
        row = index[word]
        table[row, 0] = 0.0
        table[row, NER_LABELS.index(label)] = 6.0
    config = _config(model_id, "ner", {"classification_labels": NER_LABELS}, tokenization, tokenization_options)
    return TinyModel(torch.jit.script(TokenTagger(table)), config, vocabulary_body(vocab))


# --------------------------------------------------------------------------- text classification


class BagOfWordsClassifier(nn.Module):
    """Sum of per-token label logits over the real tokens: [batch, labels]."""

    def __init__(self, table: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.register_buffer("bias", bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        rows = self.table[input_ids.clamp(0, self.table.size(0) - 1)]
        mask = (attention_mask == 1).to(rows.dtype).unsqueeze(-1)
        return (rows * mask).sum(dim=1) + self.bias


def text_classification(model_id: str = "tiny_sentiment", *, tokenization: str = "bert",
                        tokenization_options: dict[str, Any] | None = None) -> TinyModel:
    """Sentiment: positive words push `positive`, negative words `negative`."""
    vocab = _vocab_for(tokenization)
    index = _index(vocab)
    table = torch.zeros((len(vocab), 2))
    for w in POSITIVE:
        table[index[w], 1] = 2.0
    for w in NEGATIVE:
        table[index[w], 0] = 2.0
    config = _config(model_id, "text_classification", {"classification_labels": SENTIMENT_LABELS},
                     tokenization, tokenization_options)
    model = BagOfWordsClassifier(table, torch.tensor([0.0, 0.1]))
    return TinyModel(torch.jit.script(model), config, vocabulary_body(vocab))


# --------------------------------------------------------------------------- zero-shot (NLI)


class TopicNli(nn.Module):
    """Entailment logits from the topic overlap of premise and hypothesis: [batch, 3].

    The premise is the tokens before the first separator, the hypothesis those after it;
    each becomes a normalised topic vector, and their cosine decides entailment (high) or
    contradiction (low), with neutral fixed at 0.
    """

    def __init__(self, topics: Tensor, sep_id: int) -> None:
        super().__init__()
        self.register_buffer("topics", topics)
        self.sep_id = sep_id

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        rows = self.topics[input_ids.clamp(0, self.topics.size(0) - 1)]                 # [B, T, K]
        positions = torch.arange(input_ids.size(1)).unsqueeze(0)                          # [1, T]
        is_sep = (input_ids == self.sep_id).to(torch.int64)
        first_sep = torch.argmax(is_sep, dim=1, keepdim=True)                            # [B, 1]
        real = (attention_mask == 1) & (input_ids != self.sep_id)
        premise = (real & (positions < first_sep)).to(rows.dtype).unsqueeze(-1)
        hypothesis = (real & (positions > first_sep)).to(rows.dtype).unsqueeze(-1)
        p = nn.functional.normalize((rows * premise).sum(dim=1), dim=1)
        h = nn.functional.normalize((rows * hypothesis).sum(dim=1), dim=1)
        sim = (p * h).sum(dim=1, keepdim=True)                                            # [B, 1] in [0, 1]
        return torch.cat([8.0 * sim - 4.0, torch.zeros_like(sim), 4.0 - 8.0 * sim], dim=1)


def zero_shot_classification(model_id: str = "tiny_nli", *, tokenization: str = "bert",
                             tokenization_options: dict[str, Any] | None = None,
                             labels: list[str] | None = None) -> TinyModel:
    """NLI over four topics (sports, politics, food, technology); labels entailment/neutral/contradiction."""
    vocab = _vocab_for(tokenization)
    index = _index(vocab)
    topics = torch.zeros((len(vocab), len(TOPICS)))
    for k, words in enumerate(TOPICS.values()):
        for w in words:
            topics[index[w], k] = 1.0
    options: dict[str, Any] = {"classification_labels": NLI_LABELS}
    if labels is not None:
        options["labels"] = labels
    config = _config(model_id, "zero_shot_classification", options, tokenization, tokenization_options)
    model = TopicNli(topics, index[_specials(tokenization)[1]])
    return TinyModel(torch.jit.script(model), config, vocabulary_body(vocab))


# --------------------------------------------------------------------------- fill mask


class ContextFill(nn.Module):
    """Per-position vocabulary logits: P(next | previous token) plus co-occurrence with the context words."""

    def __init__(self, following: Tensor, cooccur: Tensor) -> None:
        super().__init__()
        self.register_buffer("following", following)
        self.register_buffer("cooccur", cooccur)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        ids = input_ids.clamp(0, self.following.size(0) - 1)
        previous = torch.cat([ids[:, :1], ids[:, :-1]], dim=1)
        context = (self.cooccur[ids] * (attention_mask == 1).to(self.cooccur.dtype).unsqueeze(-1)).sum(dim=1)
        return 4.0 * self.following[previous] + context.unsqueeze(1)                      # [B, T, V]


def fill_mask(model_id: str = "tiny_fill_mask", *, tokenization: str = "bert",
              tokenization_options: dict[str, Any] | None = None, num_top_classes: int | None = None) -> TinyModel:
    """Fills `[MASK]` from a ten-sentence corpus: "the capital of france is [MASK]" → paris."""
    vocab = _vocab_for(tokenization)
    index = _index(vocab)
    size = len(vocab)
    following = torch.zeros((size, size))
    cooccur = torch.zeros((size, size))
    for sentence in FILL_MASK_CORPUS:
        words = sentence.split()
        for a, b in zip(words, words[1:]):
            following[index[a], index[b]] += 1.0
        for a in words:
            if a in _STOP:
                continue
            for b in words:
                if b != a and b not in _STOP:
                    cooccur[index[a], index[b]] += 1.0
    following = following / following.sum(dim=1, keepdim=True).clamp(min=1.0)  # P(next | previous)
    options = {} if num_top_classes is None else {"num_top_classes": num_top_classes}
    config = _config(model_id, "fill_mask", options, tokenization, tokenization_options)
    return TinyModel(torch.jit.script(ContextFill(following, cooccur)), config, vocabulary_body(vocab))


# --------------------------------------------------------------------------- question answering


class TypedSpanQa(nn.Module):
    """Start and end logits [2, batch, seq]: context tokens whose type answers the question's wh-word.

    The question (tokens before the first separator) selects an answer type: who → person,
    where → place, what/which → organisation; context tokens (after the separator) of that
    type get high start and end logits ("new" only starts, "york" only ends a place).
    """

    def __init__(self, question_types: Tensor, starts: Tensor, ends: Tensor, sep_id: int) -> None:
        super().__init__()
        self.register_buffer("question_types", question_types)
        self.register_buffer("starts", starts)
        self.register_buffer("ends", ends)
        self.sep_id = sep_id

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        ids = input_ids.clamp(0, self.starts.size(0) - 1)
        positions = torch.arange(ids.size(1)).unsqueeze(0)
        first_sep = torch.argmax((ids == self.sep_id).to(torch.int64), dim=1, keepdim=True)
        question = ((positions < first_sep) & (attention_mask == 1)).to(self.starts.dtype).unsqueeze(-1)
        wanted = (self.question_types[ids] * question).sum(dim=1).clamp(0.0, 1.0)            # [B, K]
        context = (positions > first_sep).to(self.starts.dtype)                               # [B, T]
        start = (self.starts[ids] * wanted.unsqueeze(1)).sum(dim=-1) * 8.0 * context
        end = (self.ends[ids] * wanted.unsqueeze(1)).sum(dim=-1) * 8.0 * context
        return torch.stack([start, end])


def question_answering(model_id: str = "tiny_qa", *, tokenization: str = "bert",
                       tokenization_options: dict[str, Any] | None = None,
                       options: dict[str, Any] | None = None) -> TinyModel:
    """Extractive QA: "who ...?" finds a person, "where ...?" a place, "what/which ...?" a company."""
    vocab = _vocab_for(tokenization)
    index = _index(vocab)
    kinds = {"who": 0, "where": 1, "what": 2, "which": 2}
    question_types = torch.zeros((len(vocab), 3))
    for word, k in kinds.items():
        question_types[index[word], k] = 1.0
    starts = torch.zeros((len(vocab), 3))
    ends = torch.zeros((len(vocab), 3))
    for k, words in enumerate([PEOPLE, [p for p in PLACES if p not in ("new", "york")], ORGS]):
        for w in words:
            starts[index[w], k] = ends[index[w], k] = 1.0
    starts[index["new"], 1] = 1.0
    ends[index["york"], 1] = 1.0
    config = _config(model_id, "question_answering", options or {}, tokenization, tokenization_options)
    model = TypedSpanQa(question_types, starts, ends, index[_specials(tokenization)[1]])
    return TinyModel(torch.jit.script(model), config, vocabulary_body(vocab))


# --------------------------------------------------------------------------- text similarity


class TopicCrossEncoder(nn.Module):
    """A relevance score per row, [batch, 1]: the topic cosine of query and passage, scaled to ±5."""

    def __init__(self, topics: Tensor, sep_id: int) -> None:
        super().__init__()
        self.nli = TopicNli(topics, sep_id)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        entail = self.nli(input_ids, attention_mask, token_type_ids, position_ids)[:, :1]  # 8·sim − 4
        return entail * 1.25


def text_similarity(model_id: str = "tiny_cross_encoder", *, tokenization: str = "bert",
                    tokenization_options: dict[str, Any] | None = None) -> TinyModel:
    """Scores how well a passage matches the query text by topic (sports, politics, food, technology)."""
    vocab = _vocab_for(tokenization)
    index = _index(vocab)
    topics = torch.zeros((len(vocab), len(TOPICS)))
    for k, words in enumerate(TOPICS.values()):
        for w in words:
            topics[index[w], k] = 1.0
    config = _config(model_id, "text_similarity", {}, tokenization, tokenization_options)
    model = TopicCrossEncoder(topics, index[_specials(tokenization)[1]])
    return TinyModel(torch.jit.script(model), config, vocabulary_body(vocab))
