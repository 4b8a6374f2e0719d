"""Streaming text assembly in the llama.cpp adapter: stops and cut-off UTF-8."""

from __future__ import annotations

from tierwise.models.llama_cpp_chat import _StopScanner


def _stream(pieces: list[bytes], stops: tuple[str, ...]) -> tuple[str, bool]:
    scanner = _StopScanner(stops)
    sent, data = [], b""
    for piece in pieces:
        data += piece
        text, stopped = scanner.feed(data)
        sent.append(text)
        if stopped:
            return "".join(sent), True
    sent.append(scanner.flush())
    return "".join(sent), False


def test_text_without_stops_passes_through() -> None:
    assert _stream([b"Hello", b", ", b"world"], ()) == ("Hello, world", False)


def test_stop_sequence_split_over_tokens_is_cut_and_never_sent() -> None:
    text, stopped = _stream([b"Answer: 4", b"\n", b"\nUser:"], ("\n\nUser:",))
    assert (text, stopped) == ("Answer: 4", True)


def test_a_held_back_prefix_that_does_not_complete_is_released() -> None:
    scanner = _StopScanner(("STOP",))
    assert scanner.feed(b"go ST") == ("go ", False)
    assert scanner.feed(b"go STAR") == ("STAR", False)


def test_multibyte_character_cut_between_tokens_waits_for_its_end() -> None:
    euro = "€".encode()  # three bytes
    scanner = _StopScanner(())
    assert scanner.feed(b"price " + euro[:2]) == ("price ", False)
    assert scanner.feed(b"price " + euro) == ("€", False)
