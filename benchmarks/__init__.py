"""Benchmarks of the reference (run as modules, never as timed tests)."""
