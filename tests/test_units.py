import pytest

from tierwise.units import format_rate, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300KB/s", 300_000.0),
        ("1MB/s", 1e6),
        ("1.5 MB/s", 1.5e6),
        ("64KiB/s", 65536.0),
        ("250", 250.0),
        (1000, 1000.0),
        ("2GB/s", 2e9),
        ("50kb/s", 50_000.0),
    ],
)
def test_parse_rate(text: str, expected: float) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("30ms", 0.03), ("2s", 2.0), ("500us", 0.0005), ("0", 0.0)]
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("16MiB", 16 * 1024**2), ("1MB", 10**6), ("512", 512)]
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["fast", "10 furlongs/s", "KB/s", "-5KB/s", ""])
def test_bad_rate_names_the_problem(bad: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(bad)


def test_bad_duration_lists_units() -> None:
    with pytest.raises(ValueError, match=r"unknown duration unit 'h'.*\['ms', 's', 'us'\]"):
        parse_duration("1h")


def test_format_rate_round_trips() -> None:
    assert parse_rate(format_rate(300_000)) == 300_000
    assert format_rate(1_000_000) == "1MB/s"
