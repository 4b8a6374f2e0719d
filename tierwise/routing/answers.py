"""When two answers are the same answer: choice letters compared as letters, prose as
its lower-cased words. Calibration checks the local model against it; the replayed
cascades count agreeing models with it."""

from __future__ import annotations

import re

# A choice letter closed by ")", "." or ":", or alone on its line ("A\n\nThe reason is").
# "A magic square is ..." is prose, not choice A.
_CHOICE = re.compile(r"^\W*\(?([A-Ea-e])(?:[).:]|[ \t]*(?:\n|$))")


def answer_key(text: str) -> str:
    """A normal form under which two answers count as the same answer."""
    match = _CHOICE.match(text.strip())
    if match:
        return match.group(1).upper()
    return " ".join(text.lower().split())[:400]
