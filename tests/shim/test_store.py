"""The directory model store: parts in any order, idempotent retries, atomic assembly, §2.3 checks."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings, strategies as st

from tmd.api.errors import ElasticsearchError, ResourceNotFound, ValidationFailed
from tmd.store.directory import DirectoryStore, part_validation_errors, uri_for


def split(data: bytes, n: int) -> list[bytes]:
    size = -(-len(data) // n)
    return [data[i * size:(i + 1) * size] for i in range(n)]


def test_parts_in_any_order_assemble_once_complete(tmp_path):
    store = DirectoryStore(tmp_path)
    data = bytes(range(256)) * 7
    chunks = split(data, 3)
    assert store.put_part("m_1", 2, chunks[2], len(data), 3) is None
    assert store.put_part("m_1", 0, chunks[0], len(data), 3) is None
    assert store.definition("m_1") is None
    done = store.put_part("m_1", 1, chunks[1], len(data), 3)
    assert done is not None
    assert done.path.read_bytes() == data
    assert done.sha256 == hashlib.sha256(data).hexdigest() and done.length == len(data)
    assert not (store.model_dir("m_1") / "parts").exists()
    assert store.check_parts("m_1") == len(data)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(min_size=1, max_size=300), n=st.integers(1, 6), seed=st.randoms(use_true_random=False))
def test_any_order_with_retries_gives_the_same_bytes(tmp_path_factory, data, n, seed):
    store = DirectoryStore(tmp_path_factory.mktemp("store"))
    chunks = [c for c in split(data, n) if c]
    n = len(chunks)
    order = list(range(n)) + [seed.randrange(n)]  # one retried part
    seed.shuffle(order)
    for part in order:
        store.put_part("m", part, chunks[part], len(data), n)
    assert store.definition("m") is not None
    assert store.definition("m").path.read_bytes() == data


def test_validation_messages_in_elasticsearch_order():
    assert part_validation_errors(-1, 0, 0) == ["[part] must be greater or equal to 0",
                                               "[total_parts] must be greater than 0",
                                               "[total_definition_length] must be greater than 0"]
    assert part_validation_errors(3, 10, 2) == ["[part] must be less than total_parts"]
    assert part_validation_errors(0, 10, 10_001) == ["[total_parts] must be less than or equal to 10000"]
    with pytest.raises(ValidationFailed):
        DirectoryStore.put_part(DirectoryStore.__new__(DirectoryStore), "m", 5, b"x", 1, 2)


def test_start_checks_of_the_definition(tmp_path):
    store = DirectoryStore(tmp_path)
    with pytest.raises(ResourceNotFound, match=r"Could not find trained model definition \[m\]"):
        store.check_parts("m")
    store.put_part("m", 0, b"abc", 10, 2)
    with pytest.raises(ElasticsearchError, match=r"Model definition truncated"):
        store.check_parts("m")
    store.put_part("m", 1, b"abc", 12, 2)
    with pytest.raises(ElasticsearchError, match=r"\[total_definition_length\] must be the same in all model"):
        store.check_parts("m")


def test_a_crash_leaves_nothing_half_visible(tmp_path):
    """Leftover temp files (a crash mid-write) are never read as parts or as the definition."""
    store = DirectoryStore(tmp_path)
    store.put_part("m", 0, b"abc", 6, 2)
    parts = store.model_dir("m") / "parts"
    (parts / ".1.bin.xyz").write_bytes(b"de")  # a temp file of part 1 whose rename never happened
    (store.model_dir("m") / ".model.pt.abc").write_bytes(b"abc")
    assert store.assemble("m") is None and store.definition("m") is None
    assert store.file_for(store.model_dir("m").name, "model.pt") is None
    assert store.put_part("m", 1, b"def", 6, 2).path.read_bytes() == b"abcdef"


def test_model_pt_without_its_digest_is_not_a_definition(tmp_path):
    store = DirectoryStore(tmp_path)
    (store.model_dir("m")).mkdir(parents=True)
    (store.model_dir("m") / "model.pt").write_bytes(b"partial")  # crash between the two renames
    assert store.definition("m") is None
    assert store.file_for("m", "model.pt") is None


def test_vocabulary_uris_and_delete(tmp_path):
    store = DirectoryStore(tmp_path)
    vocab = store.put_vocabulary("my_model", {"vocabulary": ["[PAD]", "a"]})
    assert json.loads(vocab.path.read_text()) == {"vocabulary": ["[PAD]", "a"]}
    assert uri_for(None, store, "my_model", "vocabulary.json") == vocab.path.as_uri()
    name = store.model_dir("my_model").name
    assert name != "my_model"  # `_` is not allowed in resource names
    assert uri_for("http://shim:9200/", store, "my_model", "model.pt") == f"http://shim:9200/_tmd/store/{name}/model.pt"
    assert store.file_for(name, "vocabulary.json") == vocab.path
    assert store.file_for("../etc", "vocabulary.json") is None and store.file_for(name, "passwd") is None
    store.delete("my_model")
    assert not store.model_dir("my_model").exists()
    store.delete("my_model")  # idempotent
