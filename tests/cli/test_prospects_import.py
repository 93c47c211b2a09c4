"""`sonarly-api prospects import`, checked through the API."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.cli.helpers import api, create_key, in_thread, in_thread_json, lookup
from tests.conftest import bearer

IMPORTER = Path(__file__).resolve().parents[2] / "src/sonarly_api/prospects/importer.py"


def importer_ready() -> bool:
    return IMPORTER.is_file() and "def import_prospects" in IMPORTER.read_text()


@pytest.mark.skipif(not importer_ready(), reason="prospects importer not written yet")
class TestProspectsImport:
    async def test_import_then_reimport(self, cli_env: str, tmp_path: Path) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "import"))["id"]
        key = (await in_thread_json(*create_key("import", [group], ["prospects:read"])))["key"]
        tag = secrets.token_hex(4)
        csv_file = tmp_path / "prospects.csv"
        csv_file.write_text(
            "providerId,publicIdentifier,name,companyName,title\n"
            f"crm-1,avery-{tag},Avery Stone,Stone & Co,CTO\n"
            f"crm-2,blake-{tag},Blake Reed,,\n"
            f"crm-3,casey-{tag},Casey Lane,Lane Ltd,VP Sales\n",
            encoding="utf-8",
        )
        expected = {"imported": True, "rowsRead": 3, "updated": 0, "rejected": 0}

        first = await in_thread_json("prospects", "import", str(csv_file), "--account-group", group)
        again = await in_thread_json("prospects", "import", str(csv_file), "--account-group", group)

        assert first == {**expected, "created": 3, "unchanged": 0}
        assert again == {**expected, "created": 0, "unchanged": 3}
        async with api(cli_env) as http:
            response = await http.get(lookup(group, "crm-1"), headers=bearer(key))
        data = response.json()["data"]
        assert data["resolution"] == "unique"
        (match,) = data["matches"]
        assert (match["publicIdentifier"], match["name"], match["companyName"], match["title"]) == (
            f"avery-{tag}",
            "Avery Stone",
            "Stone & Co",
            "CTO",
        )

    async def test_a_bad_row_fails_the_whole_import(self, cli_env: str, tmp_path: Path) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "bad"))["id"]
        key = (await in_thread_json(*create_key("bad", [group], ["prospects:read"])))["key"]
        csv_file = tmp_path / "bad.csv"
        csv_file.write_text("providerId,name\ngood-1,Good\na/b,Slash\n", encoding="utf-8")

        result = await in_thread(
            "prospects", "import", str(csv_file), "--account-group", group, "--json"
        )

        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        assert "line 3:" in result.stderr
        assert "providerId" in result.stderr
        document = json.loads(result.stdout)
        assert document["imported"] is False
        assert [e["line"] for e in document["errors"]] == [3]
        async with api(cli_env) as http:
            response = await http.get(lookup(group, "good-1"), headers=bearer(key))
        assert response.json()["data"]["resolution"] == "none"  # nothing was written

    async def test_file_level_error_is_printed_verbatim(self, cli_env: str, tmp_path: Path) -> None:
        group = (await in_thread_json("account-groups", "create", "--name", "cols"))["id"]
        csv_file = tmp_path / "columns.csv"
        csv_file.write_text("providerId,[/x]\np1,v\n", encoding="utf-8")

        result = await in_thread("prospects", "import", str(csv_file), "--account-group", group)

        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        assert "line 1:" in result.stderr
        assert "'[/x]'" in result.stderr
