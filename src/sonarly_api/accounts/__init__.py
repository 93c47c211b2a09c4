"""Account groups: the tenants every prospect and key grant belongs to."""
