"""Probes for orchestrators: liveness (/healthz) and readiness (/readyz)."""
