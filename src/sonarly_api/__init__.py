"""sonarly-api: the public prospect API (provider-id lookup, scoped API keys, one envelope)."""

__version__ = "0.1.0"
