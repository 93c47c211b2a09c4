"""LinkedIn profile URLs: one canonical form per profile, and a row whose URL is another
person's profile than its publicIdentifier names is refused (issue 17, "Tenants")."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.accounts import repository as account_groups
from sonarly_api.prospects.importer import ImportFailed, RowError, import_prospects
from sonarly_api.prospects.validation import ProfileUrl, names_profile, profile_url

HEADER = "providerId,personId,publicIdentifier,linkedinUrl,name,companyName,title"
LI = "https://www.linkedin.com/in/"
NOT_A_PROFILE = (
    "linkedinUrl: must be a LinkedIn profile URL such as https://www.linkedin.com/in/jane-doe."
)


class TestCanonicalForm:
    @pytest.mark.parametrize(
        "raw",
        [
            "https://www.linkedin.com/in/jane-doe",
            "http://www.linkedin.com/in/jane-doe",
            "https://linkedin.com/in/jane-doe",
            "linkedin.com/in/jane-doe",
            "www.linkedin.com/in/jane-doe/",
            "  https://WWW.LinkedIn.COM/IN/Jane-Doe//  ",
            "https://uk.linkedin.com/in/jane-doe",
            "https://m.linkedin.com/in/jane-doe?trk=public_profile#about",
            "https://de.linkedin.com/in/jane-doe/?originalSubdomain=de",
            "https://www.linkedin.com/in/jane%2Ddoe",
        ],
    )
    def test_spellings_of_one_profile(self, raw: str) -> None:
        assert profile_url(raw) == ProfileUrl(f"{LI}jane-doe", "jane-doe")

    def test_non_ascii_identifier(self) -> None:
        expected = ProfileUrl(f"{LI}j%C3%B6rg-m%C3%BCller", "jörg-müller")
        assert profile_url("https://de.linkedin.com/in/J%C3%B6rg-M%C3%BCller/") == expected
        assert profile_url("https://www.linkedin.com/in/jörg-müller") == expected

    @pytest.mark.parametrize(
        "raw",
        [
            "https://li/jane",
            "https://www.example.com/in/jane-doe",
            "https://notlinkedin.com/in/jane-doe",
            "https://www.linkedin.com.evil.example/in/jane-doe",
            "https://www.linkedin.com/in/",
            "https://www.linkedin.com/in",
            "https://www.linkedin.com/company/acme",
            "https://www.linkedin.com/in/jane-doe/details/experience",
            "https://www.linkedin.com/sales/lead/ACwAAA,NAME",
            "https://www.linkedin.com/pub/jane-doe/1/2/3",
            "https://www.linkedin.com:8443/in/jane-doe",
            "https://jane@www.linkedin.com/in/jane-doe",
            "ftp://www.linkedin.com/in/jane-doe",
            "https://www.linkedin.com/in/a%2Fb",
            "https://www.linkedin.com/in/%FF",
            "https://www.linkedin.com/in/jane%20doe",
            "jane-doe",
            "",
        ],
    )
    def test_not_a_profile(self, raw: str) -> None:
        with pytest.raises(ValueError, match="must be a LinkedIn profile URL"):
            profile_url(raw)

    def test_names_profile(self) -> None:
        profile = profile_url(f"{LI}j%C3%B6rg")
        assert names_profile("jörg", profile)
        assert names_profile("JÖRG", profile)
        assert names_profile("j%C3%B6rg", profile)
        assert not names_profile("jorg", profile)


# --- through the importer -------------------------------------------------------------------


async def new_group(engine: AsyncEngine) -> str:
    async with engine.begin() as conn:
        return (await account_groups.create(conn, "profile urls")).id


def csv_file(path: Path, *lines: str) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


async def rows_of(engine: AsyncEngine, group: str) -> dict[str, dict[str, Any]]:
    """provider id -> the prospect's URL and its person's identifiers."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT p.provider_id, p.person_id, p.linkedin_url,"
                " s.public_identifier AS person_public_identifier,"
                " s.linkedin_url AS person_linkedin_url"
                " FROM prospects p JOIN persons s ON s.id = p.person_id"
                " WHERE p.account_group_id = :g"
            ),
            {"g": group},
        )
        return {r["provider_id"]: dict(r) for r in result.mappings()}


@pytest.fixture
def uid() -> str:
    return secrets.token_hex(4)


async def test_spellings_become_one_url_and_one_person(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await new_group(engine)
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,,http://linkedin.com/in/Ann-{uid}/,,,",
        f"p2-{uid},,,https://uk.linkedin.com/in/ann-{uid}?trk=x,,,",
        f"p3-{uid},,ANN-{uid},www.linkedin.com/in/ann-{uid}#top,,,",
    )

    summary = await import_prospects(engine, group, path)

    assert (summary.created, summary.rejected) == (3, 0)
    rows = await rows_of(engine, group)
    url = f"{LI}ann-{uid}"
    assert {r["linkedin_url"] for r in rows.values()} == {url}
    # The URL-only rows found one person; the row with an identifier has its own (persons
    # are found by publicIdentifier first, and that one is new), without the taken URL.
    assert rows[f"p1-{uid}"]["person_id"] == rows[f"p2-{uid}"]["person_id"]
    assert rows[f"p1-{uid}"]["person_linkedin_url"] == url
    assert (
        rows[f"p3-{uid}"]["person_public_identifier"],
        rows[f"p3-{uid}"]["person_linkedin_url"],
    ) == (
        f"ANN-{uid}",
        None,
    )

    again = await import_prospects(engine, group, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


async def test_url_of_another_profile_is_refused_with_its_line(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    group = await new_group(engine)
    path = csv_file(
        tmp_path / "rows.csv",
        f"p1-{uid},,jane-{uid},{LI}jane-{uid},,,",
        f"p2-{uid},,jane-{uid},https://www.linkedin.com/in/bob-{uid},,,",
        f"p3-{uid},,,https://li/bob-{uid},,,",
    )

    with pytest.raises(ImportFailed) as failed:
        await import_prospects(engine, group, path)

    assert failed.value.errors == [
        RowError(
            3,
            f"linkedinUrl: is the profile of 'bob-{uid}', but publicIdentifier is "
            f"'jane-{uid}': a row must name one person.",
        ),
        RowError(4, NOT_A_PROFILE),
    ]
    assert await rows_of(engine, group) == {}


async def test_one_group_cannot_bind_a_url_to_another_identity(
    engine: AsyncEngine, tmp_path: Path, uid: str
) -> None:
    """The issue's case: group A sends publicIdentifier=jane with bob's URL; group B's later
    rows carrying bob's URL must not resolve to jane."""
    group_a, group_b = await new_group(engine), await new_group(engine)
    attack = csv_file(
        tmp_path / "a.csv",
        f"a1-{uid},,jane-{uid},https://www.linkedin.com/in/BOB-{uid}/,,,",
        f"a2-{uid},,jane-{uid},,,,",
    )
    summary = await import_prospects(
        engine, group_a, attack, skip_invalid=True, rejects_path=tmp_path / "rejects.csv"
    )
    assert (summary.created, summary.rejected) == (1, 1)
    assert [e.line for e in summary.errors] == [2]
    jane = (await rows_of(engine, group_a))[f"a2-{uid}"]
    assert jane["person_linkedin_url"] is None

    victim = csv_file(tmp_path / "b.csv", f"b1-{uid},,,{LI}bob-{uid},,,")
    await import_prospects(engine, group_b, victim)

    bob = (await rows_of(engine, group_b))[f"b1-{uid}"]
    assert bob["person_id"] != jane["person_id"]
    assert (bob["person_public_identifier"], bob["person_linkedin_url"]) == (None, f"{LI}bob-{uid}")
