"""`sonarly-api account-groups`, and names printed as given (not read as markup)."""

from __future__ import annotations

import re

import pytest

from sonarly_api.auth import keys as key_format
from tests.cli.helpers import (
    ID,
    ISO_MILLIS,
    as_json,
    create_key,
    failure_line,
    invoke,
    new_group,
    succeeded,
)


class TestAccountGroups:
    def test_create_json(self, cli_env: str) -> None:
        document = as_json("account-groups", "create", "--name", "  Acme EMEA  ")

        assert set(document) == {"id", "name", "plan", "createdAt"}
        assert ID.fullmatch(document["id"])
        assert document["name"] == "Acme EMEA"
        assert document["plan"] == "starter"
        assert ISO_MILLIS.fullmatch(document["createdAt"])

    def test_create_table(self, cli_env: str) -> None:
        result = succeeded(invoke("account-groups", "create", "--name", "Acme US"))

        match = re.fullmatch(
            r"created account group ([0-9a-f]{24}) \(Acme US\), plan starter, 0 credits\n",
            result.stdout,
        )
        assert match is not None, result.stdout
        listed = as_json("account-groups", "list")
        assert match.group(1) in {g["id"] for g in listed}

    def test_list_json_shows_created_groups(self, cli_env: str) -> None:
        first = as_json("account-groups", "create", "--name", "first")
        second = as_json("account-groups", "create", "--name", "second")

        listed = as_json("account-groups", "list")

        assert first in listed
        assert second in listed
        assert all(set(g) == {"id", "name", "plan", "createdAt"} for g in listed)

    @pytest.mark.parametrize("name", ["", "   ", "x" * 201])
    def test_bad_name(self, cli_env: str, name: str) -> None:
        before = as_json("account-groups", "list")

        line = failure_line(invoke("account-groups", "create", "--name", name), 2)

        assert "--name" in line
        assert as_json("account-groups", "list") == before


class TestUserTextIsNotMarkup:
    """Names and ids are printed as given: Rich must not read `[...]` in them as markup."""

    NAME = "[/x] [bold]Acme"

    def test_group_name(self, cli_env: str) -> None:
        created = succeeded(invoke("account-groups", "create", "--name", self.NAME))

        assert f"({self.NAME})" in created.stdout
        succeeded(invoke("account-groups", "list"))  # the table renders (cells may wrap)

    def test_key_name_and_secret_are_shown(self, cli_env: str) -> None:
        group = new_group()

        created = succeeded(invoke(*create_key(self.NAME, [group], ["prospects:read"])))

        assert f"({self.NAME})" in created.stdout
        (secret,) = re.findall(r"sk_live_[0-9A-Za-z]+", created.stdout)
        assert key_format.check_format(secret) is None
        succeeded(invoke("keys", "list"))  # the table renders (cells may wrap)
