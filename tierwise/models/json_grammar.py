"""JSON answers from llama.cpp: a response format compiled to a grammar, once per schema.

llama-cpp-python turns a JSON schema into llama.cpp's GBNF grammar text in Python
(``json_schema_to_gbnf``); llama.cpp parses that text each time a sampler is made, and
the grammar sampler then masks every token that would break the grammar. The Python
conversion is the slow part for big schemas (bounded strings and arrays expand into
nested rules), so a model keeps the compiled grammars of the schemas it has seen.

Compiling also parses the grammar once in llama.cpp: a grammar it cannot parse makes a
NULL sampler, which the sampler chain would dereference, so it is refused here with an
error naming the field instead.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from tierwise.errors import InputError
from tierwise.models.base import ResponseFormat

#: Distinct schemas a model keeps compiled (a planner asks with one or two).
CACHE_SIZE = 64


class GrammarCache:
    """The compiled grammar of each response format a model was asked for."""

    def __init__(self, llama_cpp: Any, vocab: Any, size: int = CACHE_SIZE) -> None:
        self._lib = llama_cpp
        self._vocab = vocab
        self._size = size
        self._grammars: OrderedDict[ResponseFormat, Any] = OrderedDict()
        self.compile_seconds: dict[ResponseFormat, float] = {}

    def get(self, fmt: ResponseFormat) -> Any:
        """The ``LlamaGrammar`` of ``fmt``, compiled on its first use."""
        grammar = self._grammars.get(fmt)
        if grammar is not None:
            self._grammars.move_to_end(fmt)
            return grammar
        started = time.perf_counter()
        grammar = self._compile(fmt)
        self.compile_seconds[fmt] = time.perf_counter() - started
        self._grammars[fmt] = grammar
        if len(self._grammars) > self._size:
            old, _ = self._grammars.popitem(last=False)
            self.compile_seconds.pop(old, None)
        return grammar

    def _compile(self, fmt: ResponseFormat) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

        try:
            gbnf = json_schema_to_gbnf(json.dumps(fmt.schema_dict()))
        except (ValueError, KeyError, TypeError, AssertionError, RecursionError) as exc:
            raise InputError(
                f"response_format: llama.cpp cannot follow this JSON schema: {exc}",
                param="response_format",
            ) from exc
        grammar = LlamaGrammar.from_string(gbnf, verbose=False)
        sampler = self._lib.llama_sampler_init_grammar(
            self._vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not sampler:
            raise InputError(
                "response_format: the schema's grammar does not parse in llama.cpp",
                param="response_format",
            )
        self._lib.llama_sampler_free(sampler)
        return grammar
