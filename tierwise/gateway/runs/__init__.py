"""Plain-language runs: plan a graph of models, run each step where it is placed, answer."""
