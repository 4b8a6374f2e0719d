"""LLM routing: which model should answer each prompt (see docs/routing.md)."""
