"""Benchmarks: ``checkpoint bench NAME`` prints figures; ``checkpoint bench`` runs them all."""
