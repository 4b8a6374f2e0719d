"""The embedded default cluster spec."""
