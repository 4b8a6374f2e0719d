"""LLM routing: which model should answer each prompt (docs/ARCHITECTURE.md, "LLM routing").

What the gateway and the CLI run lives here: the ``QualityPredictor`` contract
(``predictor.py``), the learned ``Router`` that implements it, its learners, features
and data, and the choice of one model under a request's ``Policy`` (``choice.py``).
Policies replayed from stored answers, for the benchmark only, live in ``replay/``,
which nothing here imports.
"""
