"""Helpers of the importer tests (tests/prospects/test_import_*.py): rows read back from the
database, and import files written in either format."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.ids import new_id
from sonarly_api.prospects import import_copy

HEADER = "providerId,personId,publicIdentifier,linkedinUrl,name,companyName,title"


async def make_group(engine: AsyncEngine) -> str:
    group = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO account_groups (id, name) VALUES (:id, 'import test')"),
            {"id": group},
        )
    return group


async def prospects(engine: AsyncEngine, group: str) -> list[dict[str, Any]]:
    """The group's prospects with their persons' identifiers, in lookup order."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT p.id, p.person_id, p.provider_id, p.public_identifier, p.linkedin_url,"
                " p.name, p.company_name, p.title, p.created_at, p.updated_at,"
                " s.public_identifier AS person_public_identifier,"
                " s.linkedin_url AS person_linkedin_url"
                " FROM prospects p JOIN persons s ON s.id = p.person_id"
                " WHERE p.account_group_id = :group ORDER BY p.created_at, p.id"
            ),
            {"group": group},
        )
        return [dict(row) for row in result.mappings()]


async def count_persons(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM persons"))).scalar_one())


async def add_person(
    engine: AsyncEngine, public_identifier: str | None = None, linkedin_url: str | None = None
) -> str:
    person = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO persons (id, public_identifier, linkedin_url) VALUES (:id, :pi, :u)"),
            {"id": person, "pi": public_identifier, "u": linkedin_url},
        )
    return person


# --- files ----------------------------------------------------------------------------------


def write(path: Path, content: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as file:
            file.write(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def csv_file(path: Path, *lines: str) -> Path:
    return write(path, "\n".join([HEADER, *lines]) + "\n")


def jsonl(*objects: dict[str, Any]) -> str:
    return "".join(json.dumps(obj) + "\n" for obj in objects)


def force_encoding(monkeypatch: pytest.MonkeyPatch, *, ahead: bool) -> None:
    monkeypatch.setattr(import_copy, "encode_ahead", lambda spare, cost: ahead)


def sample_rows(uid: str) -> list[dict[str, Any]]:
    return [
        {"providerId": f"p1-{uid}", "publicIdentifier": f"alice-{uid}", "name": "Alice"},
        {
            "providerId": f"p2-{uid}",
            "linkedinUrl": f"https://www.linkedin.com/in/bob-{uid}",
            "title": "CTO",
        },
        {"providerId": f"p3-{uid}", "name": "Nobody", "companyName": "Acme"},
    ]


def as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER.split(","), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
