"""What every JSON body is checked for at the door, before any field is read.

Python's JSON reader accepts two things the rest of a request cannot carry: a lone
UTF-16 surrogate (``"\\ud800"``), which no UTF-8 encoder will write back out (to a
tokenizer, a node, the ledger), and nesting deep enough to exhaust recursion further in.
Both become a 400 naming the field here, rather than a 500 wherever they first break.
"""

from __future__ import annotations

from typing import Any

from tierwise.errors import InputError

#: deeper than any request tierwise serves needs (a JSON schema in ``response_format``
#: included); a bound keeps every later recursive walk (pydantic, json.dumps) safe
MAX_DEPTH = 64


def check_json(value: Any, where: str = "") -> None:
    """Raise InputError naming the first string that is not valid Unicode, or the first
    value nested deeper than :data:`MAX_DEPTH`. Iterative: the walk itself cannot recurse."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            field = path.split(".")[0] or "body"  # the whole path would be 64 names long
            raise InputError(f"{field}: JSON nested more than {MAX_DEPTH} levels deep", param=field)
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(str(key), path)
                stack.append((child, _join(path, str(key)), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, _join(path, str(i)), depth + 1) for i, child in enumerate(item))


def check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        field = where or "body"
        raise InputError(
            f"{field}: not valid Unicode text (a lone surrogate at character {exc.start}); "
            "send UTF-8 text, with surrogate pairs only in pairs",
            param=field,
        ) from None


def _join(path: str, key: str) -> str:
    # The key is client text: it can hold a lone surrogate too, and it goes into an error
    # message that must still encode as UTF-8.
    safe = key.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{path}.{safe}" if path else safe
