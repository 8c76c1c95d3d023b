"""Tokenizers for the tokenization families of es-api.md §8.2, built on HF `tokenizers`.

HF `tokenizers` does the text → sub-word work (normalisation, pre-tokenisation, WordPiece /
byte-level BPE / Unigram) from the model's vocabulary. Special tokens and truncation are
added here instead of through HF's post-processor and truncation, because Elasticsearch's
rules differ: `truncate: none` is an error with its own text, `balanced` is its own
policy, `first`/`second` refuse when the other sequence alone is too long, and `span`
splits a long input into overlapping windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenizers import Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

from tmd.api.errors import IllegalArgument, StatusException
from tmd.api.trained_model import Tokenization


@dataclass(frozen=True)
class Specials:
    cls: str
    sep: str
    pad: str
    unk: str
    mask: str
    pair_separator: tuple[str, ...]  # between the two sequences of a pair, after the first's end token

    def all(self) -> list[str]:
        return [self.cls, self.sep, self.pad, self.unk, self.mask]


BERT_SPECIALS = Specials("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", ())
MPNET_SPECIALS = Specials("<s>", "</s>", "<pad>", "[UNK]", "<mask>", ("</s>",))
ROBERTA_SPECIALS = Specials("<s>", "</s>", "<pad>", "<unk>", "<mask>", ("</s>",))
DEBERTA_SPECIALS = Specials("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", ())

_JAPANESE_SCRIPT_RUNS = r"\p{Han}+|\p{Hiragana}+|[\p{Katakana}ー]+|[^\p{Han}\p{Hiragana}\p{Katakana}ー]+"

# Which of arg_1 (attention mask), arg_2 (token types), arg_3 (positions) each family passes (§8.3).
EXTRA_ARGS = {
    "bert": 3, "bert_ja": 3, "mpnet": 1, "roberta": 1, "xlm_roberta": 1, "deberta_v2": 2,
}


@dataclass
class Encoding:
    """One tokenized input (one row of the model's batch).

    `offsets` are character offsets into the *original* text of the sequence the token came
    from (`sequence_ids`: 0 first, 1 second, -1 special); `word_ids` -1 for specials.
    """

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    sequence_ids: list[int]
    word_ids: list[int]
    is_truncated: bool = False


@dataclass
class _Piece:
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> "_Piece":
        return _Piece(self.ids[:n], self.tokens[:n], self.offsets[:n], self.word_ids[:n])

    def window(self, start: int, end: int) -> "_Piece":
        return _Piece(self.ids[start:end], self.tokens[start:end], self.offsets[start:end], self.word_ids[start:end])


class NlpTokenizer:
    """Tokenizes text for one model: its tokenization config and its vocabulary."""

    def __init__(self, tokenization: Tokenization, vocabulary: dict[str, Any]) -> None:
        vocab_list = vocabulary.get("vocabulary") or []
        if not vocab_list:
            raise IllegalArgument("[vocabulary] must not be empty")
        self.tokenization = tokenization
        self.kind = tokenization.kind
        self.vocab_list: list[str] = list(vocab_list)
        # a token listed twice maps to its last position, as in Elasticsearch's sorted vocabulary map
        self.vocab: dict[str, int] = {token: i for i, token in enumerate(self.vocab_list)}
        self.specials, self.hf = _build(tokenization, self.vocab, vocabulary)
        required = [self.specials.pad, self.specials.unk]
        if tokenization.with_special_tokens:
            required += [self.specials.cls, self.specials.sep]
        missing = [t for t in required if t not in self.vocab]
        if missing:
            raise IllegalArgument(f"vocabulary is missing the special tokens {missing} required by "
                                  f"[{self.kind}] tokenization")
        self.pad_id = self.vocab[self.specials.pad]
        self.mask_token = tokenization.mask_token
        self.mask_id = self.vocab.get(self.mask_token)
        self.num_extra_args = EXTRA_ARGS[self.kind]

    # ------------------------------------------------------------------ public

    def tokenize(self, text: str) -> _Piece:
        enc = self.hf.encode(text, add_special_tokens=False)
        word_ids = [w if w is not None else -1 for w in enc.word_ids]
        return _Piece(list(enc.ids), list(enc.tokens), [tuple(o) for o in enc.offsets], word_ids)

    def special_count(self, pair: bool) -> int:
        if not self.tokenization.with_special_tokens:
            return 0
        return 2 if not pair else 3 + len(self.specials.pair_separator)

    def encode(self, text: str, *, truncate: str | None = None, span: int | None = None) -> list[Encoding]:
        """One sequence → one encoding, or several windows when `span` is set with truncate none."""
        tok = self.tokenization
        truncate = truncate or tok.truncate
        span = tok.span if span is None else span
        piece = self.tokenize(text)
        room = tok.max_sequence_length - self.special_count(False)
        if len(piece) <= room:
            return [self._single(piece, False)]
        if truncate == "none":
            if span == -1:
                raise input_too_large(len(piece) + self.special_count(False), tok.max_sequence_length)
            return [self._single(piece.window(s, e), False) for s, e in windows(len(piece), max(room, 1), span)]
        return [self._single(piece.head(max(room, 0)), True)]

    def encode_pair(self, first: str, second: str, *, truncate: str | None = None,
                    span: int | None = None, first_piece: _Piece | None = None) -> list[Encoding]:
        """Two sequences (zero-shot premise/hypothesis, QA question/context, similarity)."""
        tok = self.tokenization
        truncate = truncate or tok.truncate
        span = tok.span if span is None else span
        if not tok.with_special_tokens:
            raise IllegalArgument("Unable to do sequence pair tokenization without special tokens")
        a = first_piece if first_piece is not None else self.tokenize(first)
        b = self.tokenize(second)
        room = tok.max_sequence_length - self.special_count(True)
        if len(a) + len(b) <= room:
            return [self._pair(a, b, False)]
        if truncate == "none":
            if span == -1:
                raise input_too_large(len(a) + len(b) + self.special_count(True), tok.max_sequence_length)
            second_room = room - len(a)
            if second_room <= 0:
                raise StatusException(
                    f"Unable to do sequence pair tokenization: the first sequence [{len(a)} tokens] is longer than "
                    f"the max sequence length [{tok.max_sequence_length}]", 400)
            return [self._pair(a, b.window(s, e), False) for s, e in windows(len(b), second_room, min(span, second_room))]
        if truncate == "first":
            # only the first sequence may shrink: the second must fit on its own
            if len(b) > room:
                raise _truncation_impossible("first", "second", len(b), room)
            return [self._pair(a.head(room - len(b)), b, True)]
        if truncate == "second":
            if len(a) > room:
                raise _truncation_impossible("second", "first", len(a), room)
            return [self._pair(a, b.head(room - len(a)), True)]
        # balanced: each sequence keeps up to half the room; a short one leaves the rest to the other
        half = max(room, 0) // 2
        keep_a = min(len(a), max(half, room - len(b)))
        keep_b = min(len(b), max(room, 0) - keep_a)
        return [self._pair(a.head(keep_a), b.head(keep_b), True)]

    def decode_token(self, token_id: int) -> str:
        """A vocabulary entry as text: byte-level BPE symbols and the Unigram word marker decoded."""
        token = self.vocab_list[token_id]
        if self.kind in ("roberta", "xlm_roberta", "deberta_v2"):
            return self.hf.decoder.decode([token]).strip()
        return token

    # ------------------------------------------------------------------ internal

    def _id(self, token: str) -> int:
        return self.vocab[token]

    def _single(self, p: _Piece, truncated: bool) -> Encoding:
        if not self.tokenization.with_special_tokens:
            return Encoding(p.ids, p.tokens, p.offsets, [0] * len(p), p.word_ids, truncated)
        s = self.specials
        return Encoding(
            [self._id(s.cls), *p.ids, self._id(s.sep)],
            [s.cls, *p.tokens, s.sep],
            [(0, 0), *p.offsets, (0, 0)],
            [-1, *([0] * len(p)), -1],
            [-1, *p.word_ids, -1],
            truncated,
        )

    def _pair(self, a: _Piece, b: _Piece, truncated: bool) -> Encoding:
        s = self.specials  # pairs always carry special tokens (encode_pair refuses otherwise)
        middle = [s.sep, *s.pair_separator]
        return Encoding(
            [self._id(s.cls), *a.ids, *[self._id(t) for t in middle], *b.ids, self._id(s.sep)],
            [s.cls, *a.tokens, *middle, *b.tokens, s.sep],
            [(0, 0), *a.offsets, *[(0, 0)] * len(middle), *b.offsets, (0, 0)],
            [-1, *([0] * len(a)), *([-1] * len(middle)), *([1] * len(b)), -1],
            [-1, *a.word_ids, *([-1] * len(middle)), *b.word_ids, -1],
            truncated,
        )


def input_too_large(length: int, maximum: int) -> StatusException:
    """The 400 for `truncate: none`; the length counts the special tokens, as Elasticsearch's does."""
    return StatusException(f"Input too large. The tokenized input length [{length}] exceeds the maximum sequence "
                           f"length [{maximum}]", 400)


def _truncation_impossible(truncate: str, other: str, length: int, room: int) -> StatusException:
    return StatusException(
        f"Attempting truncation [{truncate}] but input is too large for the {other} sequence. The tokenized input "
        f"length [{length}] exceeds the maximum sequence length [{room}], when taking special tokens into account",
        400)


def windows(length: int, size: int, span: int) -> list[tuple[int, int]]:
    """Overlapping windows of `size` tokens, each starting `size - span` after the previous.

    `span` is the overlap Elasticsearch keeps between consecutive windows; the stride is at
    least one token so the loop always ends.
    """
    stride = max(size - span, 1)
    out = []
    start = 0
    while True:
        end = min(start + size, length)
        out.append((start, end))
        if end >= length:
            return out
        start += stride


def _build(tokenization: Tokenization, vocab: dict[str, int], vocabulary: dict[str, Any]) -> tuple[Specials, HFTokenizer]:
    kind = tokenization.kind
    if kind in ("bert", "bert_ja", "mpnet"):
        specials = MPNET_SPECIALS if kind == "mpnet" else BERT_SPECIALS
        hf = HFTokenizer(models.WordPiece(vocab=vocab, unk_token=specials.unk, max_input_chars_per_word=100))
        # strip_accents=None follows lowercase, as Elasticsearch's BasicTokenizer does
        hf.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=kind != "bert_ja",
                                                   strip_accents=None, lowercase=tokenization.do_lower_case)
        if kind == "bert_ja":
            # Elasticsearch segments Japanese words with a morphological analyser (kuromoji); HF
            # tokenizers has none, so words are approximated by runs of one script (kanji,
            # hiragana, katakana, other) before WordPiece.
            hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.BertPreTokenizer(),
                                                        pre_tokenizers.Split(Regex(_JAPANESE_SCRIPT_RUNS), "isolated")])
        else:
            hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        hf.decoder = decoders.WordPiece()
    elif kind == "roberta":
        specials = ROBERTA_SPECIALS
        merges = vocabulary.get("merges")
        if not merges:
            raise IllegalArgument("[merges] must be provided for [roberta] tokenization")
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, unk_token=specials.unk))
        add_prefix = getattr(tokenization, "add_prefix_space", False)
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix, trim_offsets=True)
        hf.decoder = decoders.ByteLevel()
    elif kind in ("xlm_roberta", "deberta_v2"):
        specials = ROBERTA_SPECIALS if kind == "xlm_roberta" else DEBERTA_SPECIALS
        scores = vocabulary.get("scores")
        vocab_list = vocabulary["vocabulary"]
        if not scores or len(scores) != len(vocab_list):
            raise IllegalArgument(f"[scores] must be provided for [{kind}] tokenization, one per vocabulary entry")
        unk_id = vocab.get(specials.unk)
        hf = HFTokenizer(models.Unigram([(t, float(s)) for t, s in zip(vocab_list, scores)], unk_id=unk_id))
        norms = [normalizers.Replace(" {2,}", " ")]
        if tokenization.do_lower_case:
            norms.append(normalizers.Lowercase())
        hf.normalizer = normalizers.Sequence([normalizers.NFKC(), *norms])
        hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        hf.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    else:  # pragma: no cover - the config parser only admits the kinds above
        raise IllegalArgument(f"unsupported tokenization [{kind}]")
    hf.add_special_tokens([t for t in specials.all() if t in vocab])
    return specials, hf
