"""The provider-id lookup use case."""

from __future__ import annotations

from sonarly_api.auth.principal import Principal
from sonarly_api.db import Database
from sonarly_api.prospects import repository, validation
from sonarly_api.prospects.schemas import Resolution


def _resolution(match_count: int) -> Resolution:
    if match_count == 0:
        return "none"
    return "unique" if match_count == 1 else "ambiguous"


async def lookup_by_provider_id(
    db: Database, principal: Principal, raw_account_group_id: str, raw_provider_id: str
) -> dict[str, object]:
    """The `data` of the answer (shape: schemas.ProviderIdProspectLookup). Plain dicts on this
    path: building and re-validating Pydantic models per match cost more than the query."""
    account_group_id = validation.account_group_id(raw_account_group_id)
    provider_id = validation.provider_id(raw_provider_id)
    principal.ensure_account_group(account_group_id)
    matches = await repository.find_by_provider_id(db, account_group_id, provider_id)
    return {"providerId": provider_id, "resolution": _resolution(len(matches)), "matches": matches}


async def lookup_by_provider_ids(
    db: Database, principal: Principal, account_group_id: str, provider_ids: list[str]
) -> dict[str, object]:
    """The `data` of a batch answer (shape: schemas.ProviderIdProspectBatchLookup): for each
    requested id, in request order and repeats included, what `lookup_by_provider_id`
    answers for it. `account_group_id` and `provider_ids` are validated already (the router
    checks the body and spends the batch's rate-limit budget in between)."""
    principal.ensure_account_group(account_group_id)
    # Each distinct id asked once; its matches list is shared by its repeats (encoded twice).
    found = await repository.find_by_provider_ids(
        db, account_group_id, list(dict.fromkeys(provider_ids))
    )
    none: list[dict[str, str | None]] = []
    items = []
    for provider_id in provider_ids:
        matches = found.get(provider_id, none)
        items.append(
            {
                "providerId": provider_id,
                "resolution": _resolution(len(matches)),
                "matches": matches,
            }
        )
    return {"items": items}
