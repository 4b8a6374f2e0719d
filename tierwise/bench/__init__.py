"""Benchmark suites: each writes JSON and Markdown to bench/results/."""
