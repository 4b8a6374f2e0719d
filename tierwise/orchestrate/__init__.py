"""Plain-language requests: the tool catalog, task graphs, and the planners that make them."""
