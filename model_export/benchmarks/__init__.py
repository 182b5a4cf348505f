"""Benchmarks: scripts that print a table and write JSON. Never pass/fail tests."""
