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
PLACES = ["berlin", "paris", "london", "france", "germany", "tokyo", "york", "new"]
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
