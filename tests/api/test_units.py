import pytest

from tmd.api.errors import ParseError
from tmd.api.units import ByteSize, parse_byte_size, parse_time_value


@pytest.mark.parametrize(
    "text, expected",
    [("0", 0), ("0b", 0), ("10kb", 10240), ("1.5mb", 1572864), ("2gb", 2 << 30), ("1tb", 1 << 40),
     ("1pb", 1 << 50), ("10KB", 10240), ("512b", 512), ("3k", 3072), (0, 0)],
)
def test_byte_sizes_are_1024_based_and_echo_their_text(text, expected):
    size = parse_byte_size(text, "cache_size")
    assert size.bytes == expected
    assert size.text == str(text)


@pytest.mark.parametrize("text", ["10", "abc", "-1", "10xb", "", "1.5", True, 1024])
def test_byte_sizes_without_a_known_unit_are_rejected(text):
    with pytest.raises(ParseError) as err:
        parse_byte_size(text, "cache_size")
    assert "failed to parse setting [cache_size]" in err.value.reason
    assert err.value.status == 400


def test_defaulted_byte_size_is_written_like_elasticsearch():
    assert ByteSize.of_bytes(1630).text == "1630b"
    assert ByteSize.of_bytes(0).text == "0"


@pytest.mark.parametrize(
    "text, seconds",
    [("30s", 30.0), ("1m", 60.0), ("500ms", 0.5), ("2h", 7200.0), ("1d", 86400.0), ("0", 0.0), ("-1", None),
     ("1500micros", 0.0015)],
)
def test_time_values(text, seconds):
    value = parse_time_value(text, "timeout")
    if seconds is None:
        assert value.seconds is None
    else:
        assert value.seconds == pytest.approx(seconds)
    assert str(value) == text


@pytest.mark.parametrize("text", ["30", "abc", "1x", "-5s"])
def test_time_values_need_a_unit(text):
    with pytest.raises(ParseError, match=r"failed to parse setting \[timeout\]"):
        parse_time_value(text, "timeout")
