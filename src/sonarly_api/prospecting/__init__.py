"""Prospecting jobs: asynchronous imports of prospects from a provider, per account group."""
