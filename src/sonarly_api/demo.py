"""First-run demo: on an empty database, `serve` creates an account group, a few thousand
sample prospects and a key, and prints ready-to-paste `curl` lines for each resolution.

The prospects go in through the real importer (from a generated CSV file), so the demo shows
what an import produces. The data is generated from a fixed seed: every demo has the same
people, companies and provider ids (only the generated ids differ). Nothing happens when the
database holds any account group, key, person or prospect, with `serve --no-demo`, or with
DEMO_DATA=false.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.accounts import repository as account_groups
from sonarly_api.accounts.models import AccountGroup
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys
from sonarly_api.auth.models import ApiKey
from sonarly_api.db import create_admin_engine
from sonarly_api.prospects.importer import import_prospects
from sonarly_api.prospects.models import Person, Prospect
from sonarly_api.runtime import ResolvedDatabase

logger = logging.getLogger(__name__)

GROUP_NAME = "Demo: Northwind sales team"
KEY_NAME = "demo key (created on first start)"
PROSPECTS = 3_000
# One provider id in a hundred is carried by two persons (a CRM record merged twice, say).
AMBIGUOUS_EVERY = 100
SEED = 20_240_601
# Credits the demo group starts with: a few full jobs (a job reserves up to its maxResults,
# twice that with searchEmails).
DEMO_CREDITS = 10_000
DEMO_PERMISSIONS = ["prospects:read", "prospecting:read", "prospecting:write"]
# Any constant: only demo creations must share it.
_LOCK_KEY = 0x736F6E61726C7964  # "sonarlyd"


def _listed(text: str) -> tuple[str, ...]:
    """A word list written as one `|`-separated string: compact and easy to extend."""
    return tuple(item.strip() for item in text.split("|"))


_FIRST = _listed(
    "Avery|Blake|Casey|Dana|Elliot|Finley|Gray|Harper|Indra|Jules|Kai|Logan|Morgan|Noor|Oakley"
    "|Parker|Quinn|Riley|Sage|Taylor|Uma|Val|Wren|Yael|Zane|Amara|Bruno|Chiara|Dev|Elena|Farid"
    "|Greta|Hugo|Ines|Jonas|Kenji|Lena|Mateo|Nadia|Omar|Priya|Rafael|Sofia|Tomas|Yusuf|Zoe"
)
_LAST = _listed(
    "Stone|Reed|Lane|Brooks|Carter|Diaz|Ellis|Fischer|Garcia|Hansen|Ito|Jensen|Kowalski|Laurent"
    "|Moreau|Novak|Okafor|Patel|Quintero|Rossi|Schmidt|Tanaka|Ueda|Varga|Weber|Xu|Yilmaz|Zhang"
    "|Andersson|Bianchi|Costa|Dubois|Eriksen|Ferreira|Gomez|Haddad|Ivanova|Jovanovic|Kim"
)
_COMPANY_HEADS = _listed(
    "Northwind|Bluefin|Cedar|Copper|Harbor|Summit|Lumen|Vertex|Orbit|Meridian|Granite|Juniper"
    "|Atlas|Beacon|Kestrel|Pioneer|Riverbend|Silverline|Tidewater|Evergreen"
)
_COMPANY_TAILS = _listed(
    "Analytics|Logistics|Health|Robotics|Capital|Software|Energy|Foods|Labs|Systems|& Co|Partners"
)
_TITLES = _listed(
    "CEO|CTO|CFO|VP Sales|VP Marketing|Head of Revenue Operations|Sales Director"
    "|Account Executive|Senior Account Executive|Business Development Manager|Head of Growth"
    "|Marketing Manager|Product Manager|Engineering Manager|Procurement Lead|Operations Director"
)
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_COLUMNS = ("providerId", "publicIdentifier", "linkedinUrl", "name", "companyName", "title")


@dataclass(frozen=True)
class Examples:
    """Provider ids of the generated data, one per resolution."""

    unique: str
    ambiguous: str
    none: str


@dataclass(frozen=True)
class Demo:
    group_id: str
    key: str
    prospects: int
    examples: Examples


def generate_rows(count: int = PROSPECTS, seed: int = SEED) -> tuple[list[list[str]], Examples]:
    """`count` CSV rows (in `_COLUMNS` order; "" means no value), the same for a given seed.

    Provider ids look like Salesforce contact ids. Every person has a public identifier
    (first-last-8 hex, as LinkedIn makes them), most a LinkedIn URL; some lack a company and
    title. Row 0 is the unique example; row 1 has no company or title; every
    AMBIGUOUS_EVERY-th row reuses the previous row's provider id with another person."""
    rng = random.Random(seed)
    provider_ids: set[str] = set()
    identifiers: set[str] = set()

    def fresh(pool: set[str], make: str) -> str:
        # Draws from the seeded generator until unused: deterministic and collision-free.
        value = make
        while value in pool:
            value = value[:-1] + rng.choice(_BASE62)
        pool.add(value)
        return value

    rows: list[list[str]] = []
    ambiguous: str | None = None
    for index in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        handle = fresh(identifiers, f"{first}-{last}-{rng.getrandbits(32):08x}".lower())
        if index % AMBIGUOUS_EVERY == AMBIGUOUS_EVERY - 1:
            provider_id = rows[-1][0]
            ambiguous = ambiguous or provider_id
        else:
            body = "".join(rng.choice(_BASE62) for _ in range(13))
            provider_id = fresh(provider_ids, "0035g" + body)
        company = f"{rng.choice(_COMPANY_HEADS)} {rng.choice(_COMPANY_TAILS)}"
        title = rng.choice(_TITLES)
        if index == 1 or rng.random() < 0.03:
            company, title = "", ""
        url = "" if rng.random() < 0.1 else f"https://www.linkedin.com/in/{handle}"
        rows.append([provider_id, handle, url, f"{first} {last}", company, title])
    if ambiguous is None:
        raise ValueError(f"{count} rows are too few for an ambiguous provider id")
    none = fresh(provider_ids, "0035g" + "0" * 13)
    return rows, Examples(unique=rows[0][0], ambiguous=ambiguous, none=none)


def write_csv(rows: Sequence[Sequence[str]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(_COLUMNS)
        writer.writerows(rows)


async def _is_empty(conn: AsyncConnection) -> bool:
    tables = (AccountGroup.id, ApiKey.id, Person.id, Prospect.id)
    found = await conn.execute(select(*(select(column).limit(1).exists() for column in tables)))
    return not any(found.one())


async def create_demo(engine: AsyncEngine, pepper: bytes) -> Demo | None:
    """Create the demo data when the database is empty; None (and nothing written) otherwise."""
    # Two servers starting at once on one empty database: one creates the demo, and the
    # other then finds the group and does nothing.
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if not await _is_empty(conn):
            return None
        group = await account_groups.create(conn, GROUP_NAME, credits=DEMO_CREDITS)
    try:
        rows, examples = generate_rows()
        with tempfile.TemporaryDirectory(prefix="sonarly-demo-") as folder:
            path = Path(folder) / "demo-prospects.csv"
            write_csv(rows, path)
            summary = await import_prospects(engine, group.id, path)
        secret = key_format.generate_key()
        async with engine.begin() as conn:
            await api_keys.create_key(
                conn,
                name=KEY_NAME,
                key_hash=key_format.hash_key(secret, pepper),
                permissions=DEMO_PERMISSIONS,
                account_group_ids=[group.id],
            )
    except BaseException:
        # Half a demo would stop the next start from making a whole one: remove the group
        # (its prospects and grants go with it) and the persons no prospect refers to any
        # more (those of a completed demo import: the database was empty).
        try:
            async with engine.begin() as conn:
                await conn.execute(delete(AccountGroup).where(AccountGroup.id == group.id))
                await conn.execute(
                    delete(Person).where(
                        ~select(Prospect.id).where(Prospect.person_id == Person.id).exists()
                    )
                )
        except Exception as exc:
            logger.warning("could not remove the partial demo group %s (%r)", group.id, exc)
        raise
    return Demo(group.id, secret, summary.created, examples)


def base_url(host: str, port: int) -> str:
    """Where a local client reaches the server: a wildcard bind is reached on loopback."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - the server's bind address, not ours
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def curl_line(demo: Demo, server: str, provider_id: str) -> str:
    path = f"/v1/accounts/{demo.group_id}/prospects/by-provider-id/{quote(provider_id, safe='')}"
    return f'curl -s -H "Authorization: Bearer {demo.key}" "{server}{path}"'


# Reads the job id out of the start's answer (python3 is everywhere curl is, or close).
READ_JOB_ID = "import json,sys; print(json.load(sys.stdin)['data']['jobId'])"


def job_lines(demo: Demo, server: str) -> list[str]:
    """A ready-to-paste job start and poll: the start's answer carries the job id. The sandbox
    provider's `sandboxResults` gives the search a size (eight pages at the default delay, so
    the poll shows the job progress)."""
    jobs = f"{server}/v1/accounts/{demo.group_id}/prospecting"
    auth = f'-H "Authorization: Bearer {demo.key}"'
    body = (
        '{"source": "linkedin_search", "searchUrl": '
        '"https://www.linkedin.com/search/results/people/?keywords=vp%20sales'
        '&sandboxResults=500", "maxResults": 200}'
    )
    return [
        f"  JOB=$(curl -s {auth} -H 'Content-Type: application/json' -d '{body}' \\",
        f'    "{jobs}" | python3 -c "{READ_JOB_ID}")',
        f'  curl -s {auth} "{jobs}/$JOB"',
    ]


def print_demo(demo: Demo, server: str, out: TextIO) -> None:
    """The key, shown this once, and a curl line per resolution."""
    examples = (
        ("unique: one prospect carries this provider id", demo.examples.unique),
        ("ambiguous: two persons carry it, both are returned", demo.examples.ambiguous),
        ("none: no prospect of the group carries it", demo.examples.none),
    )
    lines = [
        "",
        "Empty database: created demo data (serve --no-demo or DEMO_DATA=false to skip).",
        f"  account group  {demo.group_id}  ({GROUP_NAME}, {demo.prospects} prospects)",
        f"  API key        {demo.key}",
        f"                 {', '.join(DEMO_PERMISSIONS)} on that group; shown only this once.",
        f"  credits        {DEMO_CREDITS} (sonarly-api credits show --account-group ID)",
        "",
        "Try the lookup once the server is up:",
    ]
    for label, provider_id in examples:
        lines += [f"  # {label}", f"  {curl_line(demo, server, provider_id)}"]
    lines += ["", "Start a prospecting job (sandbox data), then poll it:", *job_lines(demo, server)]
    out.write("\n".join([*lines, "", ""]))
    out.flush()


def seed_demo(database: ResolvedDatabase, *, host: str, port: int, enabled: bool) -> None:
    """`serve`'s hook, between opening the database and starting uvicorn. The key and the
    lines go to stdout, never to the log: logs must not hold keys."""
    if not enabled:
        return

    async def run() -> Demo | None:
        engine = create_admin_engine(database.url)
        try:
            return await create_demo(engine, database.pepper.encode())
        finally:
            await engine.dispose()

    try:
        demo = asyncio.run(run())
    except Exception as exc:
        # The service works without its demo: say why and serve anyway.
        logger.warning("demo data not created: %s: %s", type(exc).__name__, exc)
        return
    if demo is None:
        logger.debug("database not empty: no demo data")
        return
    print_demo(demo, base_url(host, port), sys.stdout)
