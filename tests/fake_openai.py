"""A base for our recording OpenAI-compatible servers: answers with an SSE stream."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


def delta(text: str | None, finish: str | None = None) -> dict[str, Any]:
    content = {} if text is None else {"content": text}
    return {"choices": [{"index": 0, "delta": content, "finish_reason": finish}]}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "choices": [],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


class SSEHandler(BaseHTTPRequestHandler):
    def send_sse(self, events: list[dict[str, Any]]) -> None:
        payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        pass  # keep test output clean
