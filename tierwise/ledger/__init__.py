"""The durable record of every request: tokens, bytes, dollars, joules, and budgets."""
