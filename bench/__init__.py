"""Benchmark harness for the provider-id lookup (`make bench`, `make bench-smoke`)."""
