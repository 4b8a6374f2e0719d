"""Model adapters: llama.cpp chat, OpenAI-compatible remotes, staged vision models."""
