"""Where each request runs: candidate plans, the cost model, the planner, the LLM router."""
