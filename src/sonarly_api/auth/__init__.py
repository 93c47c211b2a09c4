"""API keys: format, hashing, storage, and the request-time principal."""
