"""Tokenization (es-api.md §8.2) and the model inputs built from it (§8.3)."""

from __future__ import annotations

import pytest
import torch

from tmd.api.errors import ElasticsearchError
from tmd.api.trained_model import parse_tokenization
from tmd.tinymodels.vocab import bpe_vocabulary, unigram_vocabulary
from tmd.worker.nlp.inputs import build_inputs
from tmd.worker.nlp.tokenization import NlpTokenizer, windows

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "once", "twice", "thrice", "el", "##astic", "search",
         "cafe", "hello", ",", "!", "the", "##s", "Hello", "Cafe", "é", "日", "本"]
MPNET_VOCAB = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>", "once", "twice", "thrice"]


def bert(**options) -> NlpTokenizer:
    return NlpTokenizer(parse_tokenization({"bert": options}), {"vocabulary": VOCAB})


def tokens(tok: NlpTokenizer, text: str, **kwargs) -> list[str]:
    (enc,) = tok.encode(text, **kwargs)
    return enc.tokens


def test_specials_wrap_a_single_sequence():
    assert tokens(bert(), "once twice") == ["[CLS]", "once", "twice", "[SEP]"]
    assert tokens(bert(with_special_tokens=False), "once twice") == ["once", "twice"]


def test_wordpiece_continuations_and_unknown():
    # a word that cannot be covered by pieces becomes one [UNK], not a partial match
    assert tokens(bert(with_special_tokens=False), "elastic elasticsearch xyz") == [
        "el", "##astic", "[UNK]", "[UNK]"]
    assert tokens(bert(with_special_tokens=False), "thes thex") == ["the", "##s", "[UNK]"]
    (enc,) = bert(with_special_tokens=False).encode("elastic xyz")
    assert enc.ids == [8, 9, 1]
    assert enc.word_ids == [0, 0, 1]
    assert enc.offsets == [(0, 2), (2, 7), (8, 11)]


def test_lower_casing_strips_accents_only_when_lower_casing():
    assert tokens(bert(with_special_tokens=False, do_lower_case=True), "Hello Café") == ["hello", "cafe"]
    assert tokens(bert(with_special_tokens=False), "Hello Cafe") == ["Hello", "Cafe"]
    assert tokens(bert(with_special_tokens=False), "Café") == ["[UNK]"]  # accents kept: "Café" is not in the vocab


def test_punctuation_and_cjk_split():
    assert tokens(bert(with_special_tokens=False), "hello, once!") == ["hello", ",", "once", "!"]
    assert tokens(bert(with_special_tokens=False), "日本") == ["日", "本"]


def test_special_tokens_are_never_split():
    assert tokens(bert(with_special_tokens=False, do_lower_case=True), "once [MASK] twice") == [
        "once", "[MASK]", "twice"]


def test_input_too_large_when_truncate_none():
    with pytest.raises(ElasticsearchError) as err:
        bert(max_sequence_length=2, truncate="none", with_special_tokens=False).encode("once twice thrice")
    assert (err.value.status, err.value.reason) == (
        400, "Input too large. The tokenized input length [3] exceeds the maximum sequence length [2]")
    tok = bert(max_sequence_length=2, truncate="none")
    with pytest.raises(ElasticsearchError) as err:  # the length counts [CLS] and [SEP]
        tok.encode("once twice thrice")
    assert err.value.reason == "Input too large. The tokenized input length [5] exceeds the maximum sequence length [2]"
    # the same model called with truncate first succeeds, and says it truncated
    (enc,) = tok.encode("once twice thrice", truncate="first")
    assert enc.tokens == ["[CLS]", "[SEP]"] and enc.is_truncated
    (enc,) = bert(max_sequence_length=2, with_special_tokens=False).encode("once twice thrice")
    assert enc.tokens == ["once", "twice"] and enc.is_truncated


def test_truncation_reserves_room_for_specials():
    (enc,) = bert(max_sequence_length=4).encode("once twice thrice")
    assert enc.tokens == ["[CLS]", "once", "twice", "[SEP]"] and enc.is_truncated
    (enc,) = bert(max_sequence_length=5).encode("once twice thrice")
    assert len(enc.ids) == 5 and not enc.is_truncated


@pytest.mark.parametrize("truncate, first, second", [
    ("first", ["once"], ["hello", "!", "the"]),
    ("second", ["once", "twice", "thrice", "once"], []),
    ("balanced", ["once", "twice"], ["hello", "!"]),
])
def test_pair_truncation_modes(truncate, first, second):
    tok = bert(max_sequence_length=7)  # room for 4 tokens besides [CLS] a [SEP] b [SEP]
    (enc,) = tok.encode_pair("once twice thrice once", "hello ! the", truncate=truncate)
    assert enc.tokens == ["[CLS]", *first, "[SEP]", *second, "[SEP]"] and enc.is_truncated


def test_balanced_gives_a_short_second_sequence_all_it_needs():
    (enc,) = bert(max_sequence_length=7).encode_pair("once twice thrice once", "hello", truncate="balanced")
    assert enc.tokens == ["[CLS]", "once", "twice", "thrice", "[SEP]", "hello", "[SEP]"]


def test_pair_sequence_ids_and_truncation_errors():
    (enc,) = bert().encode_pair("once", "twice thrice")
    assert enc.sequence_ids == [-1, 0, -1, 1, 1, -1]
    with pytest.raises(ElasticsearchError) as err:
        bert(max_sequence_length=4).encode_pair("once", "twice thrice twice", truncate="first")
    assert err.value.reason == (
        "Attempting truncation [first] but input is too large for the second sequence. The tokenized input length "
        "[3] exceeds the maximum sequence length [1], when taking special tokens into account")
    with pytest.raises(ElasticsearchError) as err:
        bert(max_sequence_length=4).encode_pair("once twice", "thrice", truncate="second")
    assert "[second] but input is too large for the first sequence" in err.value.reason
    with pytest.raises(ElasticsearchError) as err:
        bert(max_sequence_length=5, truncate="none").encode_pair("once twice", "thrice")
    assert err.value.reason == "Input too large. The tokenized input length [6] exceeds the maximum sequence length [5]"
    with pytest.raises(ElasticsearchError) as err:
        bert(with_special_tokens=False).encode_pair("once", "twice")
    assert err.value.reason == "Unable to do sequence pair tokenization without special tokens"


def test_span_windows_overlap():
    assert windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert windows(3, 4, 2) == [(0, 3)]
    tok = bert(max_sequence_length=4, truncate="none", span=1)
    encs = tok.encode("once twice thrice once")
    assert [e.tokens[1:-1] for e in encs] == [["once", "twice"], ["twice", "thrice"], ["thrice", "once"]]
    assert not any(e.is_truncated for e in encs)


def test_mpnet_specials_and_pairs():
    tok = NlpTokenizer(parse_tokenization({"mpnet": {}}), {"vocabulary": MPNET_VOCAB})
    assert tokens(tok, "once zzz") == ["<s>", "once", "[UNK]", "</s>"]
    (enc,) = tok.encode_pair("once", "twice")
    assert enc.tokens == ["<s>", "once", "</s>", "</s>", "twice", "</s>"]
    assert tok.pad_id == 1 and tok.mask_token == "<mask>"


def test_roberta_byte_level_bpe():
    tok = NlpTokenizer(parse_tokenization({"roberta": {}}), bpe_vocabulary())
    (enc,) = tok.encode("Hello world")
    assert enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
    assert "".join(enc.tokens[1:-1]).replace("Ġ", " ") == "Hello world"
    assert enc.offsets[1][0] == 0 and enc.offsets[-2][1] == len("Hello world")
    (pair,) = tok.encode_pair("Hello", "world")
    assert pair.tokens.count("</s>") == 3
    prefixed = NlpTokenizer(parse_tokenization({"roberta": {"add_prefix_space": True}}), bpe_vocabulary())
    assert prefixed.encode("Hello")[0].tokens[1].startswith("Ġ")
    with pytest.raises(ElasticsearchError, match="merges"):
        NlpTokenizer(parse_tokenization({"roberta": {}}), {"vocabulary": bpe_vocabulary()["vocabulary"]})


def test_unigram_families():
    for kind in ("xlm_roberta", "deberta_v2"):
        tok = NlpTokenizer(parse_tokenization({kind: {}}), unigram_vocabulary(kind))
        (enc,) = tok.encode("hello world")
        assert "".join(enc.tokens[1:-1]).replace("▁", " ").strip() == "hello world"


def test_bert_ja_segments_script_runs_before_wordpiece():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "東京", "に", "住", "##ん", "んで", "##います", "。"]
    tok = NlpTokenizer(parse_tokenization({"bert_ja": {"with_special_tokens": False}}), {"vocabulary": vocab})
    assert tokens(tok, "東京に住んでいます。") == ["東京", "に", "住", "んで", "##います", "。"]


def test_missing_specials_are_reported():
    with pytest.raises(ElasticsearchError) as err:
        NlpTokenizer(parse_tokenization({"bert": {}}), {"vocabulary": ["[PAD]", "[UNK]", "words"]})
    assert "[CLS]" in err.value.reason and err.value.status == 400


@pytest.mark.parametrize("kind, vocabulary, count", [
    ("bert", {"vocabulary": VOCAB}, 4),
    ("mpnet", {"vocabulary": MPNET_VOCAB}, 2),
    ("roberta", None, 2),
    ("xlm_roberta", None, 2),
    ("deberta_v2", None, 3),
])
def test_model_inputs_per_family(kind, vocabulary, count):
    if vocabulary is None:
        vocabulary = bpe_vocabulary() if kind == "roberta" else unigram_vocabulary(kind)
    tok = NlpTokenizer(parse_tokenization({kind: {}}), vocabulary)
    (enc,) = tok.encode("once twice")
    inputs = build_inputs([enc], tok)
    assert len(inputs) == count
    assert all(t.dtype == torch.int64 and t.shape == (1, len(enc.ids)) for t in inputs)
    assert inputs[0].tolist() == [enc.ids]
    assert inputs[1].tolist() == [[1] * len(enc.ids)]
    if count >= 3:
        assert inputs[2].tolist() == [[0] * len(enc.ids)]
    if count == 4:
        assert inputs[3].tolist() == [list(range(len(enc.ids)))]


def test_rows_padded_with_pad_id_and_mask_pad_id():
    tok = bert()
    a, b = tok.encode("once")[0], tok.encode("once twice thrice")[0]
    tokens_, mask, types, positions = build_inputs([a, b], tok)
    assert tokens_.tolist() == [[2, 5, 3, 0, 0], [2, 5, 6, 7, 3]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]  # padding carries the pad id (0 here)
    assert positions.tolist() == [[0, 1, 2, 3, 4]] * 2
