"""Links between tiers: the shaping proxy and its control API."""
