"""The small WordPiece vocabulary the tiny models share.

Whole words for the tests' sentences and the word lists the task models key on, plus
every ASCII letter, digit and punctuation mark alone and as a `##` continuation, so any
ASCII text tokenizes without `[UNK]` (unknown words split into pieces instead).
"""

from __future__ import annotations

import string

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MPNET_SPECIALS = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]

PEOPLE = ["josh", "alice", "bob", "maria", "john", "sarah", "david", "emma"]
PLACES = ["berlin", "paris", "london", "france", "germany", "england", "tokyo", "york", "new"]
ORGS = ["google", "elastic", "acme", "microsoft", "ibm"]
MISC = ["english", "german", "french", "olympics"]
POSITIVE = ["good", "great", "happy", "love", "excellent", "wonderful", "nice", "best", "fantastic", "enjoyed"]
NEGATIVE = ["bad", "awful", "sad", "hate", "terrible", "horrible", "worst", "boring", "poor", "disappointing"]
TOPICS = {
    "sports": ["football", "match", "goal", "team", "tennis", "olympics", "player", "won", "score", "sports"],
    "politics": ["election", "vote", "government", "president", "minister", "parliament", "politics", "law"],
    "food": ["pizza", "pasta", "dinner", "cooking", "recipe", "restaurant", "food", "delicious", "bread"],
    "technology": ["computer", "software", "phone", "internet", "code", "technology", "laptop", "robot"],
}
COMMON = [
    "once", "twice", "thrice", "words", "are", "the", "a", "an", "is", "was", "in", "of", "and", "to", "by", "at",
    "on", "for", "with", "who", "where", "what", "when", "which", "lives", "live", "founded", "company", "capital",
    "city", "this", "example", "it", "he", "she", "they", "we", "i", "you", "my", "his", "her", "works", "born",
    "movie", "film", "book", "day", "today", "weather", "very", "not", "about", "from", "there", "that", "be",
    "has", "have", "had", "do", "does", "did", "hello", "world", "text", "input", "query", "passage", "document",
    "##s", "##ing", "##ed", "##ly", "##er",
]


def _dedupe(tokens: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


_CHARS = list(string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation)
_WORDS = COMMON + PEOPLE + PLACES + ORGS + MISC + POSITIVE + NEGATIVE + [w for ws in TOPICS.values() for w in ws]

BASE_VOCABULARY: list[str] = _dedupe(BERT_SPECIALS + _WORDS + _CHARS + ["##" + c for c in _CHARS])
MPNET_VOCABULARY: list[str] = _dedupe(MPNET_SPECIALS + _WORDS + _CHARS + ["##" + c for c in _CHARS])


def vocabulary_body(tokens: list[str] | None = None) -> dict[str, list[str]]:
    """The body of Elasticsearch's put vocabulary API for a WordPiece vocabulary."""
    return {"vocabulary": list(tokens if tokens is not None else BASE_VOCABULARY)}


# --------------------------------------------------------------------------- trained sub-word vocabularies

import json  # noqa: E402
from functools import lru_cache  # noqa: E402

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
DEBERTA_SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]

# What the BPE and Unigram vocabularies are learnt from: every word above, in sentences.
CORPUS = [" ".join(_WORDS[i:i + 8]) for i in range(0, len(_WORDS), 8)] + [
    "The capital of France is Paris.", "Josh lives in New York and works at Elastic.",
    "These are my words, once, twice, thrice.", "Hello world! What a wonderful day today.",
]


@lru_cache(maxsize=1)
def bpe_vocabulary() -> dict[str, list[str]]:
    """A byte-level BPE vocabulary and merges (roberta), learnt with HF tokenizers in milliseconds.

    Learnt rather than written out so the merges are consistent with the vocabulary.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=1, special_tokens=ROBERTA_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return {"vocabulary": vocab, "merges": merges}


@lru_cache(maxsize=2)
def unigram_vocabulary(kind: str = "xlm_roberta") -> dict[str, list]:
    """A SentencePiece-style Unigram vocabulary with scores (xlm_roberta / deberta_v2)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    specials = ROBERTA_SPECIALS if kind == "xlm_roberta" else DEBERTA_SPECIALS
    unk = "<unk>" if kind == "xlm_roberta" else "[UNK]"
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token=unk, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    pieces = json.loads(tok.to_str())["model"]["vocab"]
    return {"vocabulary": [p for p, _ in pieces], "scores": [float(s) for _, s in pieces]}


def vocabulary_for(tokenization: str) -> dict[str, list]:
    """The put-vocabulary body the tiny models use for a tokenization family."""
    if tokenization == "mpnet":
        return vocabulary_body(MPNET_VOCABULARY)
    if tokenization == "roberta":
        return bpe_vocabulary()
    if tokenization in ("xlm_roberta", "deberta_v2"):
        return unigram_vocabulary(tokenization)
    return vocabulary_body(BASE_VOCABULARY)
