"""Operating the service: structured logs, Prometheus metrics, and the one ASGI layer that
feeds both per request (see `setup.install_observability`)."""
