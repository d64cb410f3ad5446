"""Benchmarks (`strsr.bench`): timings and memory, reported, never asserted in unit tests."""
