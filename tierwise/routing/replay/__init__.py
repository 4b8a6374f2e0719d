"""Routing policies replayed from stored answers, for the benchmark only.

A replayed policy may read every model's stored answer to a prompt, which a live
request does not have; nothing the gateway or CLI runs imports this package.
"""
