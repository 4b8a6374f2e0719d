"""Federated learning on Flower, with compressed updates and link accounting.

- ``update_codec``: top-k with error feedback, stochastic 8/4-bit quantization, zstd.
- ``client_mods`` / ``client_app``: the ClientApp and the mods that compress, clip and
  (in tests) misbehave.
- ``update_strategy``: the server-side wrapper that decodes, checks and accounts.
- ``server_app``: the strategy stack, central evaluation, the report.
- ``simulation`` (Flower's Ray engine) and ``deployment`` (SuperLink + SuperNodes).
"""
