"""What flows between the steps of a run: typed values (text, label, image, audio, video)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from tierwise.orchestrate.catalog import media_type

ValueKind = Literal["text", "label", "image", "audio", "video"]


@dataclass(frozen=True)
class Value:
    """A step's input or output. ``label`` is a classifier's answer: text that names a
    class (with its probability in ``detail``)."""

    kind: ValueKind
    text: str = ""
    data: bytes = b""
    name: str | None = None  # an attached file's name
    detail: str = ""

    def as_text(self) -> str:
        """How a text-reading tool sees this value."""
        if self.kind in ("text", "label"):
            return self.text
        return f"[{self.kind} {self.name or ''}]".replace(" ]", "]")

    def to_json(self, with_data: bool = True) -> dict[str, Any]:
        """The value for a JSON answer; ``with_data=False`` leaves binary contents out
        (the ledger keeps their size, not their bytes)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("text", "label"):
            out["text"] = self.text
        else:
            out["bytes"] = len(self.data)
            if with_data:
                out["data_base64"] = base64.b64encode(self.data).decode("ascii")
        if self.name:
            out["name"] = self.name
        if self.detail:
            out["detail"] = self.detail
        return out


def file_value(name: str, data: bytes) -> Value:
    """An attached file, typed by its name's extension (text files are read as text)."""
    kind = media_type(name)
    if kind == "text":
        return Value("text", data.decode("utf-8", errors="replace"), name=name)
    return Value(kind, data=data, name=name)


def text_value(text: str) -> Value:
    return Value("text", text)
