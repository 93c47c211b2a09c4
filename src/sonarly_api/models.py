"""Every table, imported in one place so Alembic and tests see the whole schema."""

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.auth.models import ApiKey, ApiKeyGrant
from sonarly_api.credits.models import CreditBalance, CreditLedgerEntry
from sonarly_api.db import Base
from sonarly_api.linkedin.models import LinkedInConnection
from sonarly_api.prospecting.models import (
    ProspectingIdempotencyKey,
    ProspectingJob,
    ProspectingJobProspect,
)
from sonarly_api.prospects.models import Person, Prospect

__all__ = [
    "AccountGroup",
    "ApiKey",
    "ApiKeyGrant",
    "Base",
    "CreditBalance",
    "CreditLedgerEntry",
    "LinkedInConnection",
    "Person",
    "Prospect",
    "ProspectingIdempotencyKey",
    "ProspectingJob",
    "ProspectingJobProspect",
]
