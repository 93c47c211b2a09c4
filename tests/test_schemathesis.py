"""Contract fuzzing: Schemathesis against the app's own OpenAPI document, in-process.

Every operation is exercised in Schemathesis' three phases (explicit examples, coverage, fuzzing)
with every built-in check on: status codes, content types, response schemas and headers conform
to the document; schema-invalid data is rejected and schema-valid data accepted; an operation
that declares auth refuses requests without it or with a wrong one (`ignored_auth`); methods the
document does not list answer 405 with `Allow`.

The key is granted a group that holds prospects, and the generation is biased towards it (the
document's examples name it, and a hook points half of the positive lookups at it), so the run
sees 200s of all three resolutions — the only answers `ignored_auth` and the 200 schema are
checked on — not only 403s for random groups.

`make fuzz` runs the same checks longer against a real server (bench/fuzz.py).
"""

from __future__ import annotations

import copy
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import create_async_engine

from sonarly_api.accounts.models import AccountGroup
from sonarly_api.app import create_app
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys
from sonarly_api.config import Settings
from sonarly_api.credits import repository as credit_balances
from sonarly_api.credits import service as credits
from sonarly_api.errors import ValidationFailed
from sonarly_api.ids import new_id
from sonarly_api.pagination import encode_cursor
from sonarly_api.prospecting import service as jobs
from sonarly_api.prospecting.models import ProspectingJob
from sonarly_api.prospects import validation
from tests.conftest import PEPPER, Factory, make_settings
from tests.fakeprovider import FakeProvider, running_fake_provider

LOOKUP = "/v1/accounts/{accountGroupId}/prospects/by-provider-id/{providerId}"
BATCH = "/v1/accounts/{accountGroupId}/prospects/by-provider-id"
ACCOUNTS = "/v1/accounts"
# Branch provider: the Sales Navigator listings, served by a fake provider (PROVIDER=http).
LISTINGS = (
    "/v1/accounts/{accountGroupId}/sales-navigator/lead-lists",
    "/v1/accounts/{accountGroupId}/sales-navigator/saved-searches",
)

# Fixed when the module is imported: the document's examples must name the seeded group before
# the database exists. Ids are random, so no other test's rows can collide with them.
GROUP = new_id()
# Also granted to the key: /v1/accounts then has a second page, hence a genuine cursor.
SECOND_GROUP = new_id()
# Not granted, and it carries the same provider ids: its prospects must never appear.
FOREIGN_GROUP = new_id()
UNIQUE = "crm-unique-ü"
AMBIGUOUS = "crm-shared"
# Made here, stored (as its HMAC) by the `seeded` fixture: Schemathesis' auth configuration is
# read when the schema is loaded, and it must own the credentials so that its negative cases
# (no Authorization header) and the ignored_auth probes really go without them.
KEY = key_format.generate_key()
MAX_EXAMPLES = 40  # per operation and phase: about ten seconds for the whole module

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class DeferredApp:
    """The ASGI app Schemathesis calls, bound to the module's database by a fixture.

    `@schema.parametrize()` needs the schema (and the app it calls) when the module is
    imported, before any fixture has made a database; the real app is set later. Schemathesis
    runs the app's lifespan in its own event-loop thread, so the engine and its connections
    live on that loop, not on the test session's."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        assert self.app is not None, "the `served` fixture sets the app"
        await self.app(scope, receive, send)


# --- Prospecting jobs -----------------------------------------------------------------------
JOBS = "/v1/accounts/{accountGroupId}/prospecting"
JOB = JOBS + "/{jobId}"
CANCEL = JOB + "/cancel"
JOB_PATHS = (JOBS, JOB, CANCEL)
# The job endpoints answer invalid input with 400 (the reference's status for them), after the
# account group check (the hook points cases at GROUP). A valid cancel of a job that is already
# finished (e.g. cancelled by an earlier case) is the contract's 422.
JOB_OPERATIONS: list[dict[str, Any]] = [
    {
        "include-path-regex": "/prospecting",
        "checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "405"]}},
    },
    {
        "include-operation-id": "cancelProspectingJob",
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["200", "401", "403", "404", "422", "429"]
            }
        },
    },
]
# Set by the `seeded` fixture: jobs of GROUP (the status and cancel cases use them) and a cursor
# of GROUP's job list.
SEEDED_JOBS: list[str] = []
JOBS_CURSOR: list[str] = []


def _job_case(case: OpenApiCase, group: str, job_id: str | None) -> OpenApiCase:
    assert case.path_parameters is not None
    case.path_parameters["accountGroupId"] = group
    if job_id is not None and "jobId" in case.path_parameters:
        case.path_parameters["jobId"] = job_id
    return case


def _towards_seeded_jobs(case: OpenApiCase) -> st.SearchStrategy[OpenApiCase]:
    """Job cases at GROUP, unless the case's own group id is the invalid part (a random valid
    group would answer 403 before the body or query is looked at)."""
    group = (case.path_parameters or {}).get("accountGroupId", "")
    if not re.fullmatch("[0-9a-fA-F]{24}", str(group)):
        return st.just(case)
    stateful = case.meta is not None and case.meta.phase.name.value == "stateful"
    if not _positive(case) or stateful:  # keep the job id: the invalid part, or a link's
        return st.builds(_job_case, st.just(case), st.just(GROUP), st.none())
    return st.builds(
        _job_case,
        st.just(case),
        st.sampled_from([GROUP, GROUP.upper()]),
        st.sampled_from([None, *SEEDED_JOBS]),
    )


def _jobs_at_seeded_group(case: OpenApiCase) -> None:
    """Every phase (the hook above only runs in the fuzzing phase): a job case whose group id
    is well formed goes to GROUP, so what is checked is the body, query or job id."""
    parameters = case.path_parameters
    if case.operation.path not in JOB_PATHS or not parameters:
        return
    if re.fullmatch("[0-9a-fA-F]{24}", str(parameters.get("accountGroupId", ""))):
        parameters["accountGroupId"] = GROUP


def _listed_sales_navigator_id(case: OpenApiCase, lead_list: str, saved_search: str) -> None:
    """A "valid" sales_navigator start names one of the group's listings: ids are the
    provider's, which no schema can list, and any other is the contract's 400 (as for a
    cursor, a genuine value replaces the drawn one; invalid cases keep theirs)."""
    body = case.body
    if not (_positive(case) and case.operation.path == JOBS and isinstance(body, dict)):
        return
    if isinstance(body.get("leadListId"), str):
        body["leadListId"] = lead_list
    if isinstance(body.get("savedSearchId"), str):
        body["savedSearchId"] = saved_search


def _document() -> dict[str, Any]:
    """The app's OpenAPI document (it does not depend on the database), plus explicit examples
    that reach the seeded data: Schemathesis' examples phase sends them first."""
    placeholder = Settings(
        _env_file=None,
        database_url="postgresql://placeholder@127.0.0.1/placeholder",
        api_key_pepper="placeholder-pepper",
    )
    document = copy.deepcopy(create_app(placeholder).openapi())
    for parameter in document["paths"][LOOKUP]["get"]["parameters"]:
        if parameter["name"] == "accountGroupId":
            parameter["example"] = GROUP.upper()  # accepted in either case
        else:
            parameter["examples"] = {
                "unique": {"value": UNIQUE},
                "ambiguous": {"value": AMBIGUOUS},
                "none": {"value": "crm-nobody-has-this"},
            }
    for path in LISTINGS:
        for parameter in document["paths"][path]["get"]["parameters"]:
            parameter["example"] = GROUP
    # A batch that reaches the seeded data in the examples phase, whatever the fuzzing draws.
    batch = document["paths"][BATCH]["post"]
    for parameter in batch["parameters"]:
        parameter["example"] = GROUP
    batch["requestBody"]["content"]["application/json"]["example"] = {
        "providerIds": [UNIQUE, AMBIGUOUS, "crm-nobody-has-this", UNIQUE]
    }
    return document


DOCUMENT = _document()
APP = DeferredApp()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearerAuth": {"bearer": KEY}}},
            # Narrower than the default (any of 400, 401, 403, 404, …, 5xx): with a key that
            # holds the permission and a budget it never exhausts, the contract's order of
            # checks (401 → 429 → 403 PERMISSION_DENIED → 422) leaves exactly 401 (credentials
            # left out by the case), 405 (a method the document does not list) and 422
            # VALIDATION_ERROR for invalid input — never a 403 or 404 that would hide it.
            "checks": {"negative_data_rejection": {"expected-statuses": ["401", "405", "422"]}},
            # The listings answer invalid input 400, as the prospecting endpoints do.
            "operations": [
                {
                    "include-path-regex": "/sales-navigator/",
                    "checks": {
                        "negative_data_rejection": {"expected-statuses": ["400", "401", "405"]}
                    },
                },
                *JOB_OPERATIONS,
            ],
            # As in bench/fuzz.toml: reusing captured response values can make a run crawl
            # (Schemathesis 4.32); the hook already points lookups at the seeded group.
            "phases": {
                phase: {"extra-data-sources": {"responses": False}}
                for phase in ("coverage", "fuzzing")
            },
        }
    ),
)
schema.app = APP  # the ASGI transport, for the calls and for the checks' own probes
SEEN: Counter[tuple[str, str, int, str]] = Counter()


# Schemathesis' cases are generic in their operation (all OpenAPI ones here).
OpenApiCase = Case[Any]


def _positive(case: OpenApiCase) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


def _towards_seeded_data(
    case: OpenApiCase, group: str | None, provider_id: str | None
) -> OpenApiCase:
    if group is not None:
        case.path_parameters["accountGroupId"] = group
    if provider_id is not None:
        case.path_parameters["providerId"] = provider_id
    return case


GENUINE_CURSOR = encode_cursor(min(GROUP, SECOND_GROUP))


def _batch_towards_seeded_data(
    case: OpenApiCase, group: str | None, provider_ids: list[Any] | None
) -> OpenApiCase:
    if group is not None:
        case.path_parameters["accountGroupId"] = group
    if provider_ids is not None and isinstance(case.body, dict):
        # A new body: the drawn one may be the document's own example object.
        case.body = {**case.body, "providerIds": provider_ids}
    return case


@schema.hook
def flatmap_case(context: Any, case: OpenApiCase) -> st.SearchStrategy[OpenApiCase]:
    """Bias valid lookups towards the seeded data (fuzzing phase); leave invalid ones alone."""
    if case.operation.path in JOB_PATHS:
        return _towards_seeded_jobs(case)
    if _positive(case) and case.operation.path == BATCH:
        seeded_ids = st.lists(st.sampled_from([UNIQUE, AMBIGUOUS, "crm-nobody"]), min_size=1)
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


def _with_genuine_cursor(case: OpenApiCase) -> None:
    """`cursor` is opaque: the only valid values are those the endpoint returned, and the
    contract answers any other with 422 VALIDATION_ERROR (README, GET /v1/accounts). A schema
    cannot describe that, so in every phase a generated "valid" cursor is swapped for a genuine
    one, rather than weakening positive_data_acceptance for the whole operation. Invalid
    requests keep theirs (and must get a 4xx)."""
    if _positive(case) and case.query and "cursor" in case.query:
        case.query["cursor"] = GENUINE_CURSOR
        if case.operation.path == JOBS:
            case.query["cursor"] = JOBS_CURSOR[0]


def _mislabelled_provider_id(case: OpenApiCase) -> bool:
    """A "valid" lookup whose providerId the document's own pattern excludes. Schemathesis
    4.32 has drawn one (`crm\n1`, a newline, against a pattern that excludes control
    characters) and then held the 422 against the API. Such a draw is not a valid case, so it
    is discarded; `validation.provider_id` refusing the value is the document's pattern
    refusing it (TestDocumentedRules checks the two agree on every code point)."""
    if _positive(case) and case.operation.path == BATCH:
        # The same for a batch body whose ids the document's pattern excludes.
        try:
            validation.provider_ids(case.body)
        except ValidationFailed:
            return True
        return False
    if not _positive(case) or case.operation.path != LOOKUP or not case.path_parameters:
        return False
    try:
        validation.provider_id(unquote(str(case.path_parameters["providerId"])))
    except ValidationFailed:
        return True
    return False


@pytest.fixture(scope="module")
async def seeded(database_url: str) -> AsyncIterator[str]:
    """The key (granted GROUP and SECOND_GROUP); GROUP holds a unique and an ambiguous
    provider id, FOREIGN_GROUP holds both as well."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(AccountGroup),
                [{"id": g, "name": f"fuzz {g}"} for g in (GROUP, SECOND_GROUP, FOREIGN_GROUP)],
            )
        factory = Factory(engine)
        await factory.prospect(GROUP, UNIQUE, name="Avery Stone", title="CTO")
        for _ in range(2):
            await factory.prospect(GROUP, AMBIGUOUS, company_name="Stone & Co")
            await factory.prospect(FOREIGN_GROUP, AMBIGUOUS)
        await factory.prospect(FOREIGN_GROUP, UNIQUE)
        async with engine.begin() as conn:
            await api_keys.create_key(
                conn,
                name="fuzz",
                key_hash=key_format.hash_key(KEY, PEPPER.encode()),
                permissions=["prospects:read", "prospecting:read", "prospecting:write"],
                account_group_ids=[GROUP, SECOND_GROUP],
            )
        await _seed_jobs(engine)
        yield KEY
    finally:
        await engine.dispose()


async def _seed_jobs(engine: Any) -> None:
    """GROUP on the largest plan (every maxResults the document allows is within its cap),
    with credits no run exhausts, and a few jobs."""
    async with engine.begin() as conn:
        await conn.execute(
            update(AccountGroup).where(AccountGroup.id == GROUP).values(plan="enterprise")
        )
        await credit_balances.insert_balance(conn, GROUP)
        await credits.grant(conn, GROUP, 10**12, note="fuzz")
        rows = (
            await conn.execute(
                insert(ProspectingJob)
                .values(
                    [
                        {
                            "id": new_id(),
                            "account_group_id": GROUP,
                            "source": {"source": "sales_navigator", "leadListId": "1"},
                            "max_results": 10,
                            "search_emails": False,
                            "credits_reserved": 10,
                        }
                        for _ in range(4)
                    ]
                )
                .returning(ProspectingJob.id, ProspectingJob.created_at)
            )
        ).all()
        for row in rows:
            await credits.reserve(conn, GROUP, row.id, 10)
    newest_first = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
    SEEDED_JOBS[:] = [r.id for r in rows]
    JOBS_CURSOR[:] = [jobs.encode_cursor(GROUP, newest_first[0].created_at, newest_first[0].id)]


@pytest.fixture(scope="module")
async def listing_provider(database_url: str) -> AsyncIterator[FakeProvider]:
    """A fake provider whose accounts GROUP and SECOND_GROUP are connected to."""
    from sonarly_api.linkedin import repository as linkedin

    with running_fake_provider() as fake:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                for n, group in enumerate((GROUP, SECOND_GROUP)):
                    account = f"fuzz-{group}"
                    await linkedin.connect(conn, group, account)
                    fake.account(account).lead_lists = {f"ll-{n}": (f"List {n}", [])}
                    fake.account(account).saved_searches = {f"ss-{n}": (f"Search {n}", [])}
        finally:
            await engine.dispose()
        yield fake


@pytest.fixture(scope="module")
def served(seeded: str, database_url: str, listing_provider: FakeProvider) -> str:
    """Binds APP to the module's database; returns the key."""
    APP.app = create_app(
        make_settings(
            database_url,
            provider="http",
            provider_url=listing_provider.url,
            provider_token=listing_provider.token,
        )
    )
    return seeded


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # a loaded machine must not turn slowness into flakiness
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,  # every run draws afresh; nothing written to .hypothesis/
)
def test_operation_conforms(case: OpenApiCase, served: str) -> None:
    _with_genuine_cursor(case)
    _jobs_at_seeded_group(case)
    _listed_sales_navigator_id(case, "ll-0", "ss-0")
    if _mislabelled_provider_id(case):
        reject()
    response = case.call_and_validate()
    phase = case.meta.phase.name.value if case.meta is not None else "explicit"
    resolution = ""
    if response.status_code == 200 and case.operation.path == LOOKUP:
        data = response.json()["data"]
        resolution = data["resolution"]
        # What the 200 schema cannot say: only granted groups answer, and only with their own
        # prospects (FOREIGN_GROUP carries the same provider ids: a leak would add matches).
        assert case.path_parameters is not None
        group = case.path_parameters["accountGroupId"].lower()
        assert group in (GROUP, SECOND_GROUP)
        carriers = {UNIQUE: 1, AMBIGUOUS: 2}.get(data["providerId"], 0) if group == GROUP else 0
        assert len(data["matches"]) == carriers
    if response.status_code == 200 and case.operation.path == BATCH:
        # The same for each item of a batch, which answers every requested id in order.
        assert case.path_parameters is not None
        assert isinstance(case.body, dict)
        group = case.path_parameters["accountGroupId"].lower()
        assert group in (GROUP, SECOND_GROUP)
        items = response.json()["data"]["items"]
        assert [item["providerId"] for item in items] == case.body["providerIds"]
        for item in items:
            carriers = {UNIQUE: 1, AMBIGUOUS: 2}.get(item["providerId"], 0)
            assert len(item["matches"]) == (carriers if group == GROUP else 0)
            if item["matches"]:
                resolution = "batch " + item["resolution"]
    SEEN[(case.operation.label, phase, response.status_code, resolution)] += 1


# (operation, status) of the stateful run's calls on jobs a start of that run created.
CHAINED: Counter[tuple[str, int]] = Counter()
STARTED: set[str] = set()


# A schema of its own, on a copy of the document: building a state machine adds the links
# Schemathesis infers to the document it was given (DOCUMENT must stay the served one).
stateful_schema = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT),
    config=schemathesis.Config.from_dict(
        {"auth": {"openapi": {"bearerAuth": {"bearer": KEY}}}, "operations": JOB_OPERATIONS}
    ),
).include(path_regex="/prospecting")
stateful_schema.app = APP


class JobStateMachine(stateful_schema.as_state_machine()):  # type: ignore[misc]
    """Schemathesis' stateful phase on the job endpoints: it follows the document's links
    (start → get, start → cancel, get → cancel) with the job id a start returned."""

    def before_call(self, case: OpenApiCase) -> None:
        _with_genuine_cursor(case)
        _jobs_at_seeded_group(case)
        _listed_sales_navigator_id(case, "ll-0", "ss-0")

    def after_call(self, response: Any, case: OpenApiCase) -> None:
        path_id = (case.path_parameters or {}).get("jobId")
        if case.operation.path == JOBS and case.method.upper() == "POST":
            if response.status_code in (200, 202):
                STARTED.add(response.json()["data"]["jobId"])
        elif path_id in STARTED:
            CHAINED[(case.operation.label, response.status_code)] += 1


def test_links_chain_start_get_and_cancel(served: str) -> None:
    JobStateMachine.run(
        settings=settings(
            max_examples=20,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            # The same sequences every run: which links a random run follows varies, and one
            # in a few dozen followed none (the assertion below then failed on chance alone).
            derandomize=True,
        )
    )

    assert STARTED
    # Which links a run follows is random; that it follows them, and that a job it started is
    # always found (a cancel may come second: 422; or go without credentials: 401), is not.
    assert sum(CHAINED.values()) > 0, CHAINED
    assert set(CHAINED) <= {
        ("GET " + JOB, 200),
        ("GET " + JOB, 401),
        ("POST " + CANCEL, 200),
        ("POST " + CANCEL, 401),
        ("POST " + CANCEL, 422),
    }, CHAINED


def test_fuzzing_reached_the_seeded_data(request: pytest.FixtureRequest) -> None:
    """The fuzz run above is only meaningful if it saw 200s of every resolution (where
    ignored_auth and the 200 schema apply) and the rejections of invalid input."""
    fuzzed = [i for i in request.session.items if i.name.startswith("test_operation_conforms")]
    if not fuzzed:
        pytest.skip("test_operation_conforms was not selected")
    lookup = "GET " + LOOKUP
    statuses = Counter[tuple[str, int]]()
    resolutions = set()
    for (label, _, status, resolution), count in SEEN.items():
        statuses[(label, status)] += count
        if resolution:
            resolutions.add(resolution)
    assert {"none", "unique", "ambiguous"} <= resolutions, SEEN
    batch = "POST " + BATCH
    assert resolutions & {"batch unique", "batch ambiguous"}, SEEN  # batches reached the data
    assert statuses[(batch, 422)] > 0, SEEN  # invalid bodies rejected
    assert statuses[(batch, 403)] > 0, SEEN
    assert statuses[(lookup, 422)] > 0, SEEN  # invalid ids rejected
    assert statuses[(lookup, 403)] > 0, SEEN  # groups not granted
    assert statuses[("GET " + ACCOUNTS, 200)] > 0, SEEN
    assert statuses[("GET " + ACCOUNTS, 422)] > 0, SEEN  # limit out of range
    # The job endpoints reached: jobs started, listed, read and cancelled, bad input refused.
    assert statuses[("POST " + JOBS, 202)] > 0, SEEN
    assert statuses[("POST " + JOBS, 400)] > 0, SEEN
    assert statuses[("GET " + JOBS, 200)] > 0, SEEN
    assert statuses[("GET " + JOB, 200)] > 0, SEEN
    assert statuses[("POST " + CANCEL, 200)] + statuses[("POST " + CANCEL, 422)] > 0, SEEN
    for path in LISTINGS:
        assert statuses[("GET " + path, 200)] > 0, SEEN
        assert statuses[("GET " + path, 400)] > 0, SEEN  # malformed group ids


class TestDocumentedRules:
    """The patterns the document shows are the service's validation rules, exactly."""

    def test_served_document_is_the_fuzzed_one(self) -> None:
        served = _document()
        assert served["paths"] == DOCUMENT["paths"]

    def test_provider_id_pattern_matches_the_validator_on_every_code_point(self) -> None:
        pattern = validation.PROVIDER_ID_SCHEMA["pattern"]
        assert isinstance(pattern, str)
        character_class = re.compile(pattern.removeprefix("^").removesuffix("+$"))
        disagreements = []
        for code_point in range(sys.maxunicode + 1):
            char = chr(code_point)
            if unicodedata.category(char) == "Cs":
                continue  # lone surrogates cannot travel in a URL (UTF-8) at all
            documented = character_class.fullmatch(char) is not None
            try:
                validation.provider_id(char)
                accepted = True
            except ValidationFailed:
                accepted = False
            if documented != accepted:
                disagreements.append(hex(code_point))
        assert disagreements == []

    @pytest.mark.parametrize(
        ("value", "valid"),
        [
            ("a" * 256, True),
            ("a" * 257, False),
            ("", False),
            ("crm-42", True),
            ("é-ü-日本", True),
        ],
    )
    def test_provider_id_lengths(self, value: str, valid: bool) -> None:
        pattern = validation.PROVIDER_ID_SCHEMA
        documented = (
            re.fullmatch(str(pattern["pattern"]), value) is not None
            and len(value) <= validation.MAX_PROVIDER_ID_LENGTH
        )
        assert documented is valid

    @pytest.mark.parametrize(
        ("value", "valid"),
        [
            ("507f1f77bcf86cd799439011", True),
            ("507F1F77BCF86CD799439011", True),
            ("507f1f77bcf86cd79943901", False),
            ("507f1f77bcf86cd79943901g", False),
        ],
    )
    def test_account_group_id_pattern(self, value: str, valid: bool) -> None:
        documented = re.fullmatch(str(validation.ACCOUNT_GROUP_ID_SCHEMA["pattern"]), value)
        try:
            validation.account_group_id(value)
            accepted = True
        except ValidationFailed:
            accepted = False
        assert (documented is not None) is valid is accepted


class TestFoundByFuzzing:
    """What the fuzzing found, pinned as plain tests that do not depend on a random draw."""

    @pytest.mark.parametrize(
        ("group_suffix", "provider_id"),
        [("%0A", "crm-1"), ("", "crm%0A1"), ("", "%0A"), ("", "crm%0D%0A1")],
    )
    async def test_a_newline_in_a_path_parameter_is_a_422_not_a_404(
        self, client: httpx.AsyncClient, factory: Factory, group_suffix: str, provider_id: str
    ) -> None:
        group = await factory.group()
        _, key = await factory.key([group])
        path = f"/v1/accounts/{group}{group_suffix}/prospects/by-provider-id/{provider_id}"
        response = await client.get(path, headers={"Authorization": f"Bearer {key}"})

        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
