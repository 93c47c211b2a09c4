"""LinkedIn through a provider: which provider account each account group connected
(`sonarly-api linkedin …`) and the Sales Navigator listings (lead lists, saved searches)."""
