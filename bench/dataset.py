"""The bench database: where it runs, what it holds, and a manifest so it is loaded once.

Data is made with the project's own code paths (account-group and key repositories, the
prospect importer), so the bench measures rows shaped exactly as production writes them.
Provider ids are derived from (seed, group, index) by a hash: the manifest only needs the
sizes, the group ids and the keys, not a million provider ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.procs import HarnessError, Log
from sonarly_api.accounts import repository as account_groups
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys
from sonarly_api.db import async_url
from sonarly_api.embedded_pg import EmbeddedPostgres
from sonarly_api.migrations import upgrade

# Bump when the generated data changes shape: cached datasets are then reloaded.
DATASET_VERSION = 1
# A fixed bench-only pepper: the manifest stores the keys in clear anyway.
PEPPER = "bench-pepper-not-a-secret-0001"
DUPLICATE_SHARE = 0.01  # share of a group's rows whose provider id another row also carries
EMBEDDED_DIR = Path(".data/bench-pg")
EMBEDDED_BASE_DB = "bench"
MANIFEST = Path(".data/bench-manifest.json")


@dataclass(frozen=True)
class Spec:
    """A dataset size. `suffix` names its database: `<base>` or `<base>_<suffix>`."""

    suffix: str
    rows: int
    groups: int
    keys: int
    seed: int = 1
    version: int = DATASET_VERSION

    @property
    def rows_per_group(self) -> int:
        return self.rows // self.groups

    @property
    def ambiguous_ids(self) -> int:
        """Provider ids per group carried by two prospects (two persons) each."""
        return max(1, round(self.rows_per_group * DUPLICATE_SHARE / 2))

    @property
    def unique_ids(self) -> int:
        return self.rows_per_group - 2 * self.ambiguous_ids


def provider_id(seed: int, group: int, index: int) -> str:
    """Index < ambiguous_ids: an ambiguous id; below ambiguous_ids + unique_ids: unique.
    The group is part of the hash, so a group's ids exist in no other group."""
    digest = hashlib.blake2b(f"{seed}:{group}:{index}".encode(), digest_size=8).hexdigest()
    return f"crm-{digest}"


@dataclass(frozen=True)
class Key:
    key: str
    groups: list[int]  # indexes into Manifest.group_ids


@dataclass(frozen=True)
class Manifest:
    spec: Spec
    database: str  # which server and database it describes
    pepper: str
    group_ids: list[str]
    keys: list[Key]
    denied_key: str  # valid, granted group 0, but without prospects:read
    load_seconds: float
    loaded_at: str = field(default="")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Manifest:
        return Manifest(
            spec=Spec(**raw["spec"]),
            database=raw["database"],
            pepper=raw["pepper"],
            group_ids=list(raw["group_ids"]),
            keys=[Key(k["key"], list(k["groups"])) for k in raw["keys"]],
            denied_key=raw["denied_key"],
            load_seconds=float(raw["load_seconds"]),
            loaded_at=raw.get("loaded_at", ""),
        )


# --- the server -------------------------------------------------------------------------


@dataclass
class DbServer:
    """The embedded PostgreSQL (default) or the server named by BENCH_DATABASE_URL."""

    kind: str  # "embedded" | "external"
    base_url: str
    embedded: EmbeddedPostgres | None = None

    @property
    def base_database(self) -> str:
        if self.embedded is not None:
            return EMBEDDED_BASE_DB
        return make_url(self.base_url).database or EMBEDDED_BASE_DB

    def database_name(self, spec: Spec) -> str:
        return self.base_database if not spec.suffix else f"{self.base_database}_{spec.suffix}"

    def url(self, database: str) -> str:
        if self.embedded is not None:
            return self.embedded.url(database)
        return async_url(
            make_url(self.base_url).set(database=database).render_as_string(hide_password=False)
        )

    def identity(self, database: str) -> str:
        """Names the server and database, never a password."""
        if self.embedded is not None:
            return f"embedded:{self.embedded.base_dir}/{database}"
        parsed = make_url(self.base_url).set(database=database, password=None)
        return "external:" + parsed.render_as_string(hide_password=True)

    def ensure_database(self, database: str) -> None:
        if self.embedded is not None:
            self.embedded.ensure_database(database)
            return
        # Through the maintenance database: the named one may not exist yet either.
        asyncio.run(_create_database_if_missing(self.url("postgres"), database))


async def _create_database_if_missing(url: str, database: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            return
        # Identifier quoting by PostgreSQL itself; names come from our own Spec anyway.
        quoted = await conn.fetchval("SELECT quote_ident($1)", database)
        await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


def database_paths() -> list[str | None]:
    """The paths a run measures: the embedded server (None) always, and BENCH_DATABASE_URL's
    server over TCP when it is set."""
    url = os.environ.get("BENCH_DATABASE_URL", "").strip()
    return [None, url] if url else [None]


@contextlib.contextmanager
def open_server(log: Log, url: str | None = None) -> Iterator[DbServer]:
    """`url` (BENCH_DATABASE_URL) if given, else the embedded PostgreSQL under .data/bench-pg
    (stopped on exit unless another process still uses it)."""
    if url:
        log(f"database: BENCH_DATABASE_URL ({make_url(url).render_as_string(True)})")
        yield DbServer("external", async_url(url))
        return
    server = EmbeddedPostgres(EMBEDDED_DIR)
    log(f"database: embedded PostgreSQL in {EMBEDDED_DIR} (starting)")
    server.start()
    try:
        yield DbServer("embedded", server.url("postgres"), embedded=server)
    finally:
        server.stop()


# --- the dataset ------------------------------------------------------------------------


def _read_manifests() -> dict[str, Any]:
    try:
        raw = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _write_manifest(name: str, manifest: Manifest) -> None:
    manifests = _read_manifests()
    manifests[name] = manifest.to_json()
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    partial = MANIFEST.with_suffix(".json.partial")
    partial.write_text(json.dumps(manifests, indent=1))
    os.replace(partial, MANIFEST)


def ensure_dataset(server: DbServer, spec: Spec, log: Log) -> tuple[str, Manifest]:
    """(database url, manifest) of a database holding `spec`'s data; loads it if the cached
    manifest does not match the request or the database no longer matches the manifest."""
    database = server.database_name(spec)
    server.ensure_database(database)
    url = server.url(database)
    upgrade(url)  # a no-op when current; applies any migration added since the load
    identity = server.identity(database)
    cached = _read_manifests().get(identity)
    if cached is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            manifest = Manifest.from_json(cached)
            if manifest.spec == spec and manifest.pepper == PEPPER:
                if asyncio.run(_matches(url, manifest)):
                    log(f"dataset {database}: cached ({spec.rows:,} rows, manifest {MANIFEST})")
                    return url, manifest
                log(f"dataset {database}: database does not match its manifest, reloading")
    log(f"dataset {database}: loading {spec.rows:,} rows into {spec.groups:,} groups")
    manifest = asyncio.run(_load(url, spec, identity, log))
    _write_manifest(identity, manifest)
    return url, manifest


async def _matches(url: str, manifest: Manifest) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.scalar(text("SELECT count(*) FROM prospects"))
            groups = await conn.scalar(text("SELECT count(*) FROM account_groups"))
            key = await conn.scalar(
                text("SELECT count(*) FROM api_keys WHERE key_hash = :h"),
                {"h": key_format.hash_key(manifest.keys[0].key, PEPPER.encode())},
            )
    finally:
        await engine.dispose()
    spec = manifest.spec
    return bool(rows == spec.groups * spec.rows_per_group and groups == spec.groups and key == 1)


_NAMES = ("Avery Stone", 'Zoë "Z" Müller', "Jean-Luc O'Brien", "李雷", "Ana Lúcia Souza")
_COMPANIES = ("Stone & Co", "Müller GmbH", "Acme <Labs>", "Sonarly", "Nord\\Süd AG")
_TITLES = ("CTO", "VP Sales", "Head of Growth", "Account Executive", None)


def _group_rows(spec: Spec, group: int) -> Iterator[str]:
    """JSON Lines for one group: ambiguous ids twice (two persons), unique ids once."""
    for index in range(spec.ambiguous_ids + spec.unique_ids):
        pid = provider_id(spec.seed, group, index)
        for copy in range(2 if index < spec.ambiguous_ids else 1):
            handle = f"b{spec.seed}-{group}-{index}-{copy}"
            n = group + index + copy
            row = {
                "providerId": pid,
                "publicIdentifier": handle,
                "linkedinUrl": None if n % 11 == 0 else f"https://www.linkedin.com/in/{handle}",
                "name": _NAMES[n % len(_NAMES)],
                "companyName": _COMPANIES[n % len(_COMPANIES)],
                "title": _TITLES[n % len(_TITLES)],
            }
            yield json.dumps(row, ensure_ascii=False) + "\n"


def _grants(spec: Spec, key_index: int, rng: random.Random) -> list[int]:
    """Key k is granted group k mod G (so every group has a key) and, for one key in four,
    one or two more: keys with a few groups, as integrations have."""
    groups = {key_index % spec.groups}
    if key_index % 4 == 0 and spec.groups > 1:
        groups.update(rng.sample(range(spec.groups), k=min(spec.groups, rng.choice((1, 2)))))
    return sorted(groups)


async def _load(url: str, spec: Spec, identity: str, log: Log) -> Manifest:
    started = time.monotonic()
    rng = random.Random(spec.seed)
    pepper = PEPPER.encode()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE prospects, persons, api_key_grants, api_keys, account_groups CASCADE"
                )
            )
        async with engine.begin() as conn:
            group_ids = [
                (await account_groups.create(conn, f"bench group {g}")).id
                for g in range(spec.groups)
            ]
            keys: list[Key] = []
            for k in range(spec.keys):
                secret = key_format.generate_key()
                grants = _grants(spec, k, rng)
                await api_keys.create_key(
                    conn,
                    name=f"bench key {k}",
                    key_hash=key_format.hash_key(secret, pepper),
                    permissions=["prospects:read"],
                    account_group_ids=[group_ids[g] for g in grants],
                )
                keys.append(Key(secret, grants))
            denied = key_format.generate_key()
            await api_keys.create_key(
                conn,
                name="bench key without prospects:read",
                key_hash=key_format.hash_key(denied, pepper),
                permissions=["prospecting:read"],
                account_group_ids=[group_ids[0]],
            )
        await _import_groups(engine, spec, group_ids, log)
        log("  VACUUM ANALYZE")
        await _vacuum(url)
    finally:
        await engine.dispose()
    seconds = time.monotonic() - started
    log(f"  loaded in {seconds:.0f} s")
    return Manifest(
        spec=spec,
        database=identity,
        pepper=PEPPER,
        group_ids=group_ids,
        keys=keys,
        denied_key=denied,
        load_seconds=round(seconds, 1),
        loaded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


async def _import_groups(
    engine: AsyncEngine,
    spec: Spec,
    group_ids: list[str],
    log: Log,
) -> None:
    """One import per group, through the project's importer (as `prospects import` does)."""
    # Imported here so that the rest of the harness works while the importer is changing.
    try:
        from sonarly_api.prospects.importer import import_prospects
    except ImportError as exc:
        raise HarnessError(f"the project's prospect importer cannot be imported: {exc}") from None

    started = time.monotonic()
    every = max(1, spec.groups // 20)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        path = Path(tmp) / "group.jsonl"
        for g, group_id in enumerate(group_ids):
            with path.open("w", encoding="utf-8") as out:
                out.writelines(_group_rows(spec, g))
            await import_prospects(engine, group_id, path)
            done = g + 1
            if done % every == 0 or done == spec.groups:
                elapsed = time.monotonic() - started
                rate = done * spec.rows_per_group / max(elapsed, 1e-9)
                eta = (spec.groups - done) * spec.rows_per_group / max(rate, 1e-9)
                log(
                    f"  {done:,}/{spec.groups:,} groups, {rate:,.0f} rows/s, "
                    f"{elapsed:.0f} s elapsed, ~{eta:.0f} s left"
                )


async def _vacuum(url: str) -> None:
    # VACUUM cannot run in a transaction: a plain asyncpg connection is in autocommit.
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute("VACUUM (ANALYZE) prospects, persons, api_keys, api_key_grants")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
