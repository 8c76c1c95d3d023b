import re

from hypothesis import given, strategies as st

from tmd.api.resources import is_valid_es_id, resource_name

DNS = re.compile(r"^[a-z0-9](?:[a-z0-9\-\.]*[a-z0-9])?$")


def test_valid_names_are_kept():
    assert resource_name("my-model.v2") == "my-model.v2"


def test_underscores_are_mapped_with_a_hash():
    name = resource_name("test_model")
    assert name.startswith("test-model-") and DNS.match(name)
    assert resource_name("test_model") != resource_name("test-model")


@given(st.from_regex(r"[a-z0-9][a-z0-9_\-\.]{0,62}[a-z0-9]", fullmatch=True))
def test_every_es_id_maps_to_a_dns_name(es_id):
    assert is_valid_es_id(es_id)
    name = resource_name(es_id)
    assert DNS.match(name) and len(name) <= 253


def test_es_id_rule():
    assert not is_valid_es_id("Upper")
    assert not is_valid_es_id("_leading")
    assert not is_valid_es_id("x" * 65)
