"""Benchmarks: figures measured on replayed fixtures, in audio time (not tests)."""
