"""PII and secrets in text: found by pattern, then confirmed by checksum where one exists.

Kinds: e-mail addresses, phone numbers, payment cards (Luhn), IBANs (ISO 7064 mod 97),
national IDs (US SSN, UK National Insurance number, French INSEE with its key), IP
addresses (v4 and v6, parsed), and secrets (API-key shapes of common providers, private
key blocks, and ``password=`` / ``api_key:`` assignments).

Checksums are what keep false alarms down: sixteen digits are a card only if Luhn agrees,
so order numbers and timestamps are left alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    text: str


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _insee_ok(text: str) -> bool:
    s = re.sub(r"\s", "", text).upper().replace("2A", "19").replace("2B", "18")
    return len(s) == 15 and s.isdigit() and 97 - int(s[:13]) % 97 == int(s[13:])


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _card_ok(text: str) -> bool:
    d = _digits(text)
    return 13 <= len(d) <= 19 and luhn_ok(d)


_DATE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")


def _phone_ok(text: str) -> bool:
    """8 to 15 digits, and not a date (9+ digits unless written with + or parentheses)."""
    n = len(_digits(text))
    if _DATE.match(text) or not 8 <= n <= 15:
        return False
    return n >= 9 or text.startswith(("+", "("))


def _ssn_ok(text: str) -> bool:
    area, group, serial = text.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_Check = Callable[[str], bool]
# Order matters: earlier kinds claim their characters first (a card is not also a phone).
_RULES: list[tuple[str, re.Pattern[str], _Check | None]] = [
    (
        "secret",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
        None,
    ),
    (
        "secret",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|sk_live_[0-9a-zA-Z]{24,})"
        ),
        None,
    ),
    (
        "secret",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|token)\s?[:=]\s?"
            r"(?P<v>[^\s'\",;]{5,}[^\s'\",;.!?])"
        ),
        None,
    ),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_ok),
    ("card", re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), _card_ok),
    ("national_id", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), _ssn_ok),
    ("national_id", re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"), None),
    (
        "national_id",
        re.compile(r"\b[12] ?\d{2} ?\d{2} ?(?:\d{2}|2A|2B) ?\d{3} ?\d{3} ?\d{2}\b"),
        _insee_ok,
    ),
    ("ip", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _ip_ok),
    (
        "ip",
        re.compile(
            r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?:::[0-9A-Fa-f]{1,4})*(?![\w:])"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}(?![\w:])"
        ),
        _ip_ok,
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
            r"\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)"
        ),
        _phone_ok,
    ),
]


def find_pii(text: str) -> list[Finding]:
    """Every finding, left to right, none overlapping."""
    taken: list[Finding] = []
    for kind, pattern, check in _RULES:
        for m in pattern.finditer(text):
            group = "v" if "v" in pattern.groupindex else 0  # `key=VALUE`: only the value
            start, end, value = m.start(group), m.end(group), m.group(group)
            if check is not None and not check(value):
                continue
            if any(start < f.end and f.start < end for f in taken):
                continue
            taken.append(Finding(kind, start, end, value))
    return sorted(taken, key=lambda f: f.start)


@dataclass
class Redactor:
    """Masks PII with placeholders like ``[EMAIL_1]`` and puts it back in answers.

    The same value gets the same placeholder across all messages of a conversation, so a
    model can still refer to "the address above" consistently.
    """

    by_value: dict[str, str]
    by_placeholder: dict[str, str]

    @classmethod
    def new(cls) -> Redactor:
        return cls({}, {})

    def mask(self, text: str) -> str:
        out, last = [], 0
        for f in find_pii(text):
            out.append(text[last : f.start])
            out.append(self._placeholder(f))
            last = f.end
        out.append(text[last:])
        return "".join(out)

    def _placeholder(self, f: Finding) -> str:
        if f.text not in self.by_value:
            count = sum(p.startswith(f"[{f.kind.upper()}_") for p in self.by_placeholder) + 1
            tag = f"[{f.kind.upper()}_{count}]"
            self.by_value[f.text] = tag
            self.by_placeholder[tag] = f.text
        return self.by_value[f.text]

    def restore(self, text: str) -> str:
        if not self.by_placeholder:
            return text
        pattern = re.compile("|".join(re.escape(p) for p in self.by_placeholder))
        return pattern.sub(lambda m: self.by_placeholder[m.group()], text)

    def streaming(self) -> StreamRestorer:
        return StreamRestorer(self)


@dataclass
class StreamRestorer:
    """Restores placeholders that may arrive split across streamed chunks."""

    redactor: Redactor
    held: str = ""

    def feed(self, piece: str) -> str:
        self.held += piece
        longest = max((len(p) for p in self.redactor.by_placeholder), default=0)
        cut = _safe_cut(self.held, longest)
        out, self.held = self.held[:cut], self.held[cut:]
        return self.redactor.restore(out)

    def flush(self) -> str:
        out, self.held = self.held, ""
        return self.redactor.restore(out)


def _safe_cut(text: str, longest: int) -> int:
    """How much of ``text`` can go out: all but an unclosed ``[`` near the end."""
    start = text.rfind("[")
    if start == -1 or "]" in text[start:] or len(text) - start >= longest:
        return len(text)
    return start


def kinds(findings: list[Finding]) -> list[str]:
    return sorted({f.kind for f in findings})
