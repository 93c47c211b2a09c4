"""Schemathesis hooks for `make fuzz` (loaded by the CLI through SCHEMATHESIS_HOOKS).

The same bias as tests/test_schemathesis.py, for a served document: the lookup's parameters (and
the batch lookup's) get explicit examples naming the seeded group and provider ids (examples
phase), valid lookups and batches are pointed at the seeded data half of the time (fuzzing
phase), and a generated "valid" cursor is swapped for a genuine one, because the contract
answers any other cursor with 422 (the value is opaque, so no schema can describe it). The data
comes from bench/fuzz.py through FUZZ_*.
"""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

LOOKUP = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"
BATCH = "/v1/accounts/{accountGroupId}/prospects/by-provider-id"
LISTINGS = (
    "/v1/accounts/{accountGroupId}/sales-navigator/lead-lists",
    "/v1/accounts/{accountGroupId}/sales-navigator/saved-searches",
)
GROUP = os.environ["FUZZ_GROUP"]
UNIQUE = os.environ["FUZZ_UNIQUE"]
AMBIGUOUS = os.environ["FUZZ_AMBIGUOUS"]
CURSOR = os.environ["FUZZ_CURSOR"]
# The job endpoints: their cases go to a group on the largest plan, with credits.
JOBS = "/v1/accounts/{accountGroupId}/prospecting"
JOB_PATHS = (JOBS, JOBS + "/{jobId}", JOBS + "/{jobId}/cancel")
JOBS_GROUP = os.environ["FUZZ_JOBS_GROUP"]


# Schemathesis' cases are generic in their operation (all OpenAPI ones here).
OpenApiCase = Case[Any]


def _positive(case: OpenApiCase) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    for path in LISTINGS:  # the seeded group is connected to the fake provider
        for parameter in raw_schema["paths"][path]["get"]["parameters"]:
            parameter["example"] = GROUP
    for parameter in raw_schema["paths"][LOOKUP]["get"]["parameters"]:
        if parameter["name"] == "accountGroupId":
            parameter["example"] = GROUP.upper()
        else:
            parameter["examples"] = {
                "unique": {"value": UNIQUE},
                "ambiguous": {"value": AMBIGUOUS},
                "none": {"value": "fuzz-nobody-has-this"},
            }
    batch = raw_schema["paths"][BATCH]["post"]
    for parameter in batch["parameters"]:
        parameter["example"] = GROUP.upper()
    batch["requestBody"]["content"]["application/json"]["example"] = {
        "providerIds": [UNIQUE, AMBIGUOUS, "fuzz-nobody-has-this", UNIQUE]
    }


def _towards_seeded_data(
    case: OpenApiCase, group: str | None, provider_id: str | None
) -> OpenApiCase:
    assert case.path_parameters is not None
    if group is not None:
        case.path_parameters["accountGroupId"] = group
    if provider_id is not None and "providerId" in case.path_parameters:
        case.path_parameters["providerId"] = provider_id
    return case


def _batch_towards_seeded_data(
    case: OpenApiCase, group: str | None, provider_ids: list[Any] | None
) -> OpenApiCase:
    assert case.path_parameters is not None
    if group is not None:
        case.path_parameters["accountGroupId"] = group
    if provider_ids is not None and isinstance(case.body, dict):
        case.body = {**case.body, "providerIds": provider_ids}  # not the document's example
    return case


@schemathesis.hook
def flatmap_case(context: Any, case: OpenApiCase) -> st.SearchStrategy[OpenApiCase]:
    if _positive(case) and case.operation.path in LISTINGS:
        return st.builds(
            _towards_seeded_data, st.just(case), st.sampled_from([None, GROUP]), st.none()
        )
    if _positive(case) and case.operation.path == BATCH:
        seeded_ids = st.lists(st.sampled_from([UNIQUE, AMBIGUOUS, "fuzz-nobody"]), min_size=1)
        return st.builds(
            _batch_towards_seeded_data,
            st.just(case),
            st.sampled_from([None, GROUP, GROUP.upper()]),
            st.one_of(st.none(), seeded_ids),
        )
    if not _positive(case) or case.operation.path != LOOKUP:
        return st.just(case)
    return st.builds(
        _towards_seeded_data,
        st.just(case),
        st.sampled_from([None, GROUP, GROUP.upper()]),
        st.sampled_from([None, None, UNIQUE, AMBIGUOUS]),
    )


@schemathesis.hook
def before_call(context: Any, case: OpenApiCase, kwargs: dict[str, Any]) -> None:
    if _positive(case) and case.query and "cursor" in case.query:
        # The jobs list's empty cursor is its first page, as genuine as any it returns.
        case.query["cursor"] = "" if case.operation.path == JOBS else CURSOR
    parameters = case.path_parameters
    # A job case whose group id is well formed goes to JOBS_GROUP: a random group would answer
    # 403 before the body, query or job id (what the case is about) is looked at.
    if (
        case.operation.path in JOB_PATHS
        and parameters
        and re.fullmatch("[0-9a-fA-F]{24}", str(parameters.get("accountGroupId", "")))
    ):
        parameters["accountGroupId"] = JOBS_GROUP
    body = case.body
    if _positive(case) and case.operation.path == JOBS and isinstance(body, dict):
        # A valid sales_navigator start names one of the group's listings (the provider's
        # ids, which no schema can list): JOBS_GROUP's, connected by bench/fuzz.py.
        if isinstance(body.get("leadListId"), str):
            body["leadListId"] = "ll-2"
        if isinstance(body.get("savedSearchId"), str):
            body["savedSearchId"] = "ss-2"
