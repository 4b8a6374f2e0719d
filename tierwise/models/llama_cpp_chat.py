"""Local chat models run by llama.cpp (through llama-cpp-python).

tierwise drives the token loop itself instead of calling ``create_chat_completion``,
so that token counts come from the model's own tokenizer in streaming mode too
(llama-cpp-python reports usage only for non-streamed answers). The prompt is built
with the chat template stored in the GGUF file, the same way llama-cpp-python does.
A response format (JSON, or JSON following a schema) is applied as a llama.cpp grammar
in the sampler chain (:mod:`.json_grammar`), so the loop itself does not change.
"""

from __future__ import annotations

import importlib.util
import math
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tierwise.config import GgufFile
from tierwise.errors import ConfigError, DependencyMissingError, InputError
from tierwise.models.base import ChatChunk, ChatMessage, ChatModel, ChatParams, Usage
from tierwise.models.json_grammar import GrammarCache
from tierwise.optional import require


def resolve_gguf(source: GgufFile) -> Path:
    """The GGUF file's path; a packaged file is found without importing its package."""
    if source.path is not None:
        path = Path(source.path)
    else:
        assert source.package is not None and source.file is not None
        spec = importlib.util.find_spec(source.package)
        if spec is None or not spec.submodule_search_locations:
            pip_name = source.package.replace("_", "-")
            raise DependencyMissingError(
                pip_name, f"pip install {pip_name}", f"the model file {source.file}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / source.file
    if not path.is_file():
        raise ConfigError(f"GGUF model file not found: {path}")
    return path


def _import_llama() -> Any:
    purpose = "local LLMs (llama.cpp)"
    llama_cpp = require("llama_cpp", "llama-cpp-python", purpose)
    return llama_cpp, require("llama_cpp.llama_chat_format", "llama-cpp-python", purpose)


class LlamaCppChat(ChatModel):
    """A GGUF chat model. One generation at a time: llama.cpp contexts are not thread-safe."""

    def __init__(
        self,
        name: str,
        path: Path,
        n_ctx: int,
        threads: int | None,
        max_tokens_default: int,
        vocab_only: bool = False,
    ) -> None:
        """``vocab_only`` loads just the tokenizer and chat template (to count tokens)."""
        llama_cpp, chat_format = _import_llama()
        self.name = name
        self.path = path
        self.max_tokens_default = max_tokens_default
        self._lib = llama_cpp
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            vocab_only=vocab_only,
            verbose=False,
        )
        self._n_ctx = n_ctx
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(
                f"{path} has no chat template (tokenizer.chat_template); it is not a chat model"
            )
        eos, bos = self._llm.token_eos(), self._llm.token_bos()
        self._formatter = chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=self._llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._llm._model.token_get_text(bos) if bos != -1 else "",
        )
        self._lock = threading.Lock()
        self.grammars = GrammarCache(llama_cpp, self._llm._model.vocab)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        """The exact token ids the model reads for ``messages``."""
        rendered = self._formatter(
            messages=[{"role": m.role, "content": m.content} for m in messages]
        )
        tokens: list[int] = self._llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=True, special=True
        )
        bos = self._llm.token_bos()
        if len(tokens) > 1 and tokens[0] == tokens[1] == bos:
            tokens = tokens[1:]  # the template already wrote BOS
        return tokens

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
        with self._lock:
            yield from self._generate(messages, params)

    def _generate(self, messages: list[ChatMessage], params: ChatParams) -> Iterator[ChatChunk]:
        prompt = self.prompt_tokens(messages)
        room = self.n_ctx - len(prompt)
        if room <= 0:
            raise InputError(
                f"the prompt is {len(prompt)} tokens; {self.name} holds at most {self.n_ctx}",
                param="messages",
            )
        limit = min(params.max_tokens or self.max_tokens_default, room)
        fmt = params.response_format
        # llama.cpp's grammar sampler masks every token that would break the format.
        grammar = self.grammars.get(fmt) if fmt is not None else None
        self._llm.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        vocab = self._llm._model.vocab
        text = _StopScanner(params.stop)
        generated: list[int] = []
        logprobs: list[float] = []
        finish = "length"
        for token in self._llm.generate(
            prompt, temp=params.temperature, top_p=params.top_p, reset=True, grammar=grammar
        ):
            logprobs.append(self._logprob(token))
            if self._lib.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            generated.append(token)
            piece, stopped = text.feed(self._llm.detokenize(generated, prev_tokens=prompt))
            if piece:
                yield ChatChunk(piece)
            if stopped:
                finish = "stop"
                break
            if len(generated) >= limit:
                break
        rest = text.flush()
        if rest:
            yield ChatChunk(rest)
        mean = sum(logprobs) / len(logprobs) if logprobs else None
        usage = Usage(len(prompt), len(generated))
        yield ChatChunk("", finish_reason=finish, usage=usage, mean_logprob=mean)

    def _logprob(self, token: int) -> float:
        """log P(token) under the logits it was just sampled from (temperature 1).

        ``generate`` yields a token before evaluating it, so the context's last logits
        are still the ones that produced it.
        """
        n_vocab = self._llm.n_vocab()
        logits = np.ctypeslib.as_array(self._llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        top = float(logits.max())
        return float(logits[token]) - top - math.log(float(np.exp(logits - top).sum()))

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()


class _StopScanner:
    """Turns the growing detokenized bytes into safe-to-send text.

    It holds back an incomplete UTF-8 character and any tail that could still become a
    stop sequence, and cuts the text at the first stop sequence found.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = [s for s in stops if s]
        self.sent = 0
        self.text = ""

    def feed(self, all_bytes: bytes) -> tuple[str, bool]:
        self.text = _decode_complete(all_bytes)
        for stop in self.stops:
            at = self.text.find(stop)
            if at != -1:
                self.text = self.text[:at]
                return self._take(len(self.text)), True
        hold = max((_overlap(self.text, s) for s in self.stops), default=0)
        return self._take(len(self.text) - hold), False

    def flush(self) -> str:
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        piece, self.sent = self.text[self.sent : upto], upto
        return piece


def _decode_complete(data: bytes) -> str:
    """Decode UTF-8, leaving out a character still cut off at the end."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8", errors="replace")
        return data.decode("utf-8", errors="replace")


def _overlap(text: str, stop: str) -> int:
    """Length of the longest tail of ``text`` that is a head of ``stop``."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
