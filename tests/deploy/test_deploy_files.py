"""The deployment files, without a Docker engine: the compose file's shape (validated by
docker-compose itself when installed), the image's layout and user, and the health check
commands run for real against a local HTTP server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container must listen on
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


class TestDockerfile:
    def test_two_stages_on_python_slim(self) -> None:
        stages = [args for op, args in _instructions() if op == "FROM"]
        assert stages == ["python:3.12-slim AS builder", "python:3.12-slim"]
        copied = [args for op, args in _runtime_stage() if op == "COPY"]
        assert copied == ["--from=builder /opt/venv /opt/venv", "--from=builder /app /app"]

    def test_runs_as_an_unprivileged_user(self) -> None:
        (user,) = [args for op, args in _runtime_stage() if op == "USER"]
        uid, _, gid = user.partition(":")
        assert int(uid) >= 1000
        assert int(gid) >= 1000
        assert f"--uid {uid}" in DOCKERFILE

    def test_alembic_sits_two_levels_above_the_installed_package(self) -> None:
        # migrations.py reads parents[2] of its own file: /app/src/sonarly_api -> /app.
        instructions = _instructions()
        assert ("WORKDIR", "/app") in instructions
        assert ("COPY", "alembic.ini ./") in instructions
        assert ("COPY", "alembic ./alembic") in instructions
        assert ("COPY", "src ./src") in instructions
        assert any(
            op == "RUN" and "pip install --no-deps --editable ." in a for op, a in instructions
        )
        from sonarly_api import migrations

        assert migrations.ALEMBIC_INI == ROOT / "alembic.ini"  # the same rule, in a checkout

    def test_entrypoint_serves_on_all_interfaces(self) -> None:
        runtime = dict(_runtime_stage())
        assert json.loads(runtime["ENTRYPOINT"]) == ["sonarly-api"]
        assert json.loads(runtime["CMD"])[:3] == ["serve", "--host", ALL_INTERFACES]

    def test_dockerignore_keeps_secrets_and_local_state_out(self) -> None:
        ignored = (ROOT / ".dockerignore").read_text().split()
        for entry in (".env", ".venv", ".data", ".git", "tests"):
            assert entry in ignored


class TestCompose:
    def test_services(self) -> None:
        assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "worker"}
        assert SERVICES["postgres"]["image"] == "postgres:18"
        assert SERVICES["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql"]
        assert SERVICES["redis"]["image"].startswith("redis:")

    def test_migration_runs_once_before_the_api(self) -> None:
        migrate, api = SERVICES["migrate"], SERVICES["api"]
        assert migrate["command"] == ["db", "upgrade"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert api["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
        for service in ("postgres", "redis", "api"):
            assert SERVICES[service]["healthcheck"]["test"]

    def test_api_runs_two_workers_on_redis_counters(self) -> None:
        api = SERVICES["api"]
        assert api["command"][:5] == ["serve", "--host", ALL_INTERFACES, "--port", "8000"]
        assert api["command"][5:7] == ["--workers", "2"]
        env = api["environment"]
        assert env["RATE_LIMIT_STORAGE_URI"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"].startswith("postgresql://sonarly:")
        assert env["DATABASE_URL"].endswith("@postgres:5432/sonarly")
        assert env["API_KEY_PEPPER"].startswith("${API_KEY_PEPPER:?")
        assert SERVICES["migrate"]["environment"] == env

    def test_jobs_run_in_the_worker_service(self) -> None:
        api, worker = SERVICES["api"], SERVICES["worker"]
        assert "--no-worker" in api["command"]
        assert worker["command"][0] == "worker"
        assert worker["image"] == api["image"]
        env = worker["environment"]
        assert env["DATABASE_URL"] == api["environment"]["DATABASE_URL"]
        assert env["API_KEY_PEPPER"] == api["environment"]["API_KEY_PEPPER"]
        assert worker["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}

    @pytest.mark.skipif(
        shutil.which("docker-compose") is None,
        reason="docker-compose not installed (CI installs Debian's): the compose file is not "
        "validated by Compose itself here",
    )
    def test_docker_compose_accepts_it_and_requires_the_pepper(self) -> None:
        def config(**env: str) -> subprocess.CompletedProcess[str]:
            clean = {k: v for k, v in os.environ.items() if k != "API_KEY_PEPPER"}
            return subprocess.run(
                ["docker-compose", "--file", str(ROOT / "docker-compose.yml"), "config"],
                env={**clean, **env},
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )

        accepted = config(API_KEY_PEPPER="pepper-for-the-test-0123")
        assert accepted.returncode == 0, accepted.stderr
        assert "pepper-for-the-test-0123" in accepted.stdout
        refused = config()
        assert refused.returncode != 0
        assert "set API_KEY_PEPPER" in refused.stderr


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _run_check(argv: list[str], port: int, path: str) -> int:
    assert argv[:2] == ["python", "-c"]
    code = argv[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    code = re.sub(r"/(healthz|readyz)", path, code)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode


class TestHealthChecks:
    def test_image_check_passes_on_200_and_fails_otherwise(self, local_server: int) -> None:
        runtime = dict(_runtime_stage())
        argv = json.loads(runtime["HEALTHCHECK"].split(" CMD ", 1)[1])
        assert "/healthz" in argv[2]
        assert _run_check(argv, local_server, "/healthz") == 0
        assert _run_check(argv, local_server, "/readyz") != 0  # 503
        assert _run_check(argv, local_server, "/missing") != 0  # 404

    def test_compose_api_check_is_readiness(self, local_server: int) -> None:
        argv = SERVICES["api"]["healthcheck"]["test"][1:]
        assert "/readyz" in argv[2]
        assert _run_check(argv, local_server, "/healthz") == 0
        assert _run_check(argv, local_server, "/readyz") != 0
