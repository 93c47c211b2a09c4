"""Prospects: provider-id lookup and bulk import."""
