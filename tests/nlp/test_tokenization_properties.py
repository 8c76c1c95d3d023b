"""Properties every tokenization family keeps, whatever the text (hypothesis)."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from tmd.api.errors import ElasticsearchError
from tmd.api.trained_model import parse_tokenization
from tmd.tinymodels.vocab import vocabulary_for
from tmd.worker.nlp.inputs import build_inputs
from tmd.worker.nlp.tokenization import NlpTokenizer

FAMILIES = ["bert", "bert_ja", "mpnet", "roberta", "xlm_roberta", "deberta_v2"]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@lru_cache(maxsize=None)
def tokenizer(kind: str, max_len: int, truncate: str) -> NlpTokenizer:
    vocabulary = vocabulary_for("bert" if kind == "bert_ja" else kind)
    return NlpTokenizer(parse_tokenization({kind: {"max_sequence_length": max_len, "truncate": truncate}}),
                        vocabulary)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(FAMILIES), text=TEXT, max_len=st.integers(4, 40))
def test_single_sequence_fits_and_offsets_point_into_the_text(kind, text, max_len):
    tok = tokenizer(kind, max_len, "first")
    (enc,) = tok.encode(text)
    assert len(enc.ids) <= max_len
    assert enc.ids[0] == tok.vocab[tok.specials.cls] and enc.ids[-1] == tok.vocab[tok.specials.sep]
    assert all(0 <= i < len(tok.vocab_list) for i in enc.ids)
    assert len(enc.ids) == len(enc.tokens) == len(enc.offsets) == len(enc.sequence_ids) == len(enc.word_ids)
    for (start, end), seq in zip(enc.offsets, enc.sequence_ids):
        assert 0 <= start <= end <= len(text) or seq == -1
    inputs = build_inputs([enc], tok)
    assert all(t.shape == (1, len(enc.ids)) for t in inputs)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(FAMILIES), first=TEXT, second=TEXT, max_len=st.integers(12, 40),
       truncate=st.sampled_from(["balanced", "first", "second"]))
def test_pairs_fit_or_fail_with_an_elasticsearch_error(kind, first, second, max_len, truncate):
    tok = tokenizer(kind, max_len, truncate)
    try:
        (enc,) = tok.encode_pair(first, second)
    except ElasticsearchError as err:
        assert err.status == 400 and truncate in ("first", "second")
        return
    assert len(enc.ids) <= max_len
    assert set(enc.sequence_ids) <= {-1, 0, 1}
    if 1 in enc.sequence_ids:  # the second sequence comes after the separator that ends the first
        assert enc.sequence_ids.index(1) > enc.sequence_ids.index(-1, 1)


@settings(max_examples=30, deadline=None)
@given(text=TEXT, span=st.integers(0, 6))
def test_span_windows_cover_every_token(text, span):
    tok = NlpTokenizer(parse_tokenization({"bert": {"max_sequence_length": 10, "truncate": "none", "span": span}}),
                       vocabulary_for("bert"))
    whole = tok.tokenize(text)
    windows = tok.encode(text)
    covered = [i for enc in windows for i in enc.ids[1:-1]]
    assert set(whole.ids) <= set(covered) if whole.ids else covered == []
    assert all(len(enc.ids) <= 10 for enc in windows)
    assert not any(enc.is_truncated for enc in windows)
