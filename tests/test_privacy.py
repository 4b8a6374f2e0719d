"""PII in prompts: detection, masking, and proof that none reaches a remote node.

The remote is a recording OpenAI-compatible server of our own: a cloud node hosts an
``openai-remote`` model pointing at it, behind a real gateway, link proxy and device node.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.recording_cluster import Echo, Recording, ask, recording_cluster
from tierwise.privacy.pii import Redactor, find_pii, iban_ok, luhn_ok

SECRETS = {
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
    "phone": "+44 20 7946 0958",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "national_id": "123-45-6789",
    "ip": "203.0.113.7",
    "secret": "sk-proj-Zq8xT2mW9vL4nB7cR1pK6dY3",
}
PII_PROMPT = (
    f"Write to {SECRETS['email']} from {SECRETS['ip']}: card {SECRETS['card']}, phone "
    f"{SECRETS['phone']}, IBAN {SECRETS['iban']}, SSN {SECRETS['national_id']}, "
    f"key {SECRETS['secret']}. Repeat the e-mail address."
)


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "text"), list(SECRETS.items()))
def test_each_kind_is_found(kind: str, text: str) -> None:
    found = find_pii(f"here: {text} ok")
    assert [(f.kind, f.text) for f in found] == [(kind, text)]


@pytest.mark.parametrize(
    "text",
    [
        "Order 1234 5678 9012 3456 shipped",  # 16 digits, Luhn fails: not a card
        "Meet on 2024-11-23 at 10:30",
        "Version 1.2.3 and pi 3.14159",
        "GB00 WEST 1234 5698",  # IBAN checksum fails
        "Call me maybe, at 300 or 999.",
        "The ratio 16:9 and address 999.1.1.1",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert find_pii(text) == []


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88 3704 0044 0532 0130 00")


def test_mask_and_restore_round_trip_with_stable_placeholders() -> None:
    r = Redactor.new()
    masked = r.mask(f"a {SECRETS['email']} b {SECRETS['email']} c {SECRETS['card']}")
    assert masked == "a [EMAIL_1] b [EMAIL_1] c [CARD_1]"
    assert r.restore("Sent to [EMAIL_1].") == f"Sent to {SECRETS['email']}."
    stream = r.streaming()
    pieces = ["To [EM", "AIL", "_1] and [CA", "RD_1", "] [not a tag] done"]
    joined = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert joined == f"To {SECRETS['email']} and {SECRETS['card']} [not a tag] done"


# -- end to end: nothing personal reaches the remote -----------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    yield from recording_cluster(tmp_path_factory.mktemp("privacy"))


@pytest.fixture(scope="module")
def gateway(recording: Recording) -> openai.OpenAI:
    return recording.plain


def _remote_saw_pii() -> list[str]:
    seen = b"".join(Echo.raw).decode()
    return [v for v in SECRETS.values() if v in seen]


def test_redact_masks_before_sending_and_restores_the_answer(gateway: openai.OpenAI) -> None:
    before = len(Echo.raw)
    text, ext = ask(gateway, PII_PROMPT, "redact")
    assert len(Echo.raw) == before + 1, "the prompt should have gone to the remote, masked"
    assert _remote_saw_pii() == []
    assert "[EMAIL_1]" in Echo.raw[-1].decode()
    assert text == PII_PROMPT  # the echo, with every placeholder put back
    assert ext["privacy"] == {"pii": sorted(SECRETS), "action": "masked"}


def test_redact_restores_placeholders_split_across_stream_chunks(gateway: openai.OpenAI) -> None:
    text, ext = ask(gateway, PII_PROMPT, "redact", stream=True)
    assert _remote_saw_pii() == []
    assert text == PII_PROMPT
    assert ext["privacy"]["action"] == "masked"


def test_pii_stays_local_keeps_personal_prompts_on_the_device(gateway: openai.OpenAI) -> None:
    before = len(Echo.raw)
    _, ext = ask(gateway, PII_PROMPT, "pii-stays-local", model="auto")
    assert ext["plan"] == "chat@device/smollm2"
    assert ext["privacy"] == {"pii": sorted(SECRETS), "action": "kept-on-device"}
    assert len(Echo.raw) == before
    _, ext = ask(gateway, "Name three rivers in Europe.", "pii-stays-local", model="auto")
    assert ext["plan"] == "chat@cloud/cloud-gpt" and "privacy" not in ext
    assert len(Echo.raw) == before + 1
    assert _remote_saw_pii() == []


def test_pii_stays_local_refuses_a_remote_only_model(gateway: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError, match="privacy"):
        ask(gateway, PII_PROMPT, "pii-stays-local")
    assert _remote_saw_pii() == []


def test_the_ledger_records_the_providers_usage(gateway: openai.OpenAI) -> None:
    reply = gateway.chat.completions.create(
        model="cloud-gpt", messages=[{"role": "user", "content": "Count me."}], max_tokens=8
    )
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (40, 30)
    assert reply.model_extra is not None
    request_id = reply.model_extra["tierwise"]["request_id"]
    record = gateway.get(f"/requests/{request_id}", cast_to=httpx.Response).json()
    assert (record["tokens_in"], record["tokens_out"]) == (40, 30)
    tokens = (40 * 1.0 + 30 * 2.0) / 1e6  # at the spec's prices
    # Its tokens and the link's egress (~$1e-7 a KB), not the cloud node's $0.00114 a
    # second of waiting on the remote as well.
    assert tokens <= record["usd_modelled"] < tokens + 1e-6


def test_openai_prompts_are_counted_with_openai_s_tokenizer() -> None:
    from tierwise.models.base import ChatMessage
    from tierwise.models.openai_tokens import count_chat_tokens

    # "Hello world" is tokens 9906 and 1917 in cl100k_base; "user" is one token.
    assert count_chat_tokens("gpt-4", [ChatMessage("user", "Hello world")]) == 3 + 3 + 1 + 2
    assert count_chat_tokens("gpt-3.5-turbo", [ChatMessage("user", "")]) == 7
    assert count_chat_tokens("not-an-openai-model", [ChatMessage("user", "Hi")]) is None
