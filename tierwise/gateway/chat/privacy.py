"""Privacy for chat prompts, as a wrapper: narrow the policy to what the content needs.

Without PII, ``pii-stays-local`` and ``redact`` have nothing to protect and the prompt
may go anywhere. With PII, the first keeps it on the device (``raw-stays-local``) and the
second masks it on every plan that leaves the device; the answer is restored before the
client sees it. What was found is noted by kind, never by value.
"""

from __future__ import annotations

from tierwise.gateway.chat.answering import ChatAnswerer, ChatCall, Streamed
from tierwise.gateway.recorder import Served
from tierwise.privacy.pii import Redactor, find_pii, kinds


class PrivateChat:
    def __init__(self, inner: ChatAnswerer) -> None:
        self._inner = inner

    async def complete(self, call: ChatCall) -> Served:
        return await self._inner.complete(narrowed(call))

    async def stream(self, call: ChatCall) -> Streamed:
        return await self._inner.stream(narrowed(call))


def narrowed(call: ChatCall) -> ChatCall:
    """``call`` with its policy narrowed to its prompt's content, noted on its record
    (which keeps the policy as asked)."""
    notes, policy = call.pending.notes, call.policy
    found = kinds([f for m in call.messages() for f in find_pii(m["content"])])
    if policy.privacy in ("pii-stays-local", "redact") and not found:
        return call.with_(policy=policy.model_copy(update={"privacy": "any"}))
    if not found:
        return call
    if policy.privacy == "pii-stays-local":
        notes["privacy"] = {"pii": found, "action": "kept-on-device"}
        return call.with_(policy=policy.model_copy(update={"privacy": "raw-stays-local"}))
    if policy.privacy == "redact":
        notes["privacy"] = {"pii": found, "action": "masked-if-sent"}
        narrowed = policy.model_copy(update={"privacy": "any"})
        return call.with_(policy=narrowed, redactor=Redactor.new())
    notes["privacy"] = {"pii": found, "action": "none"}
    return call
