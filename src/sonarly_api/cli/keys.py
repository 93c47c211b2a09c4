"""`sonarly-api keys`: issue, list, revoke and rotate API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sonarly_api.accounts import repository as account_groups
from sonarly_api.auth import keys as key_format
from sonarly_api.auth import repository as api_keys
from sonarly_api.auth.principal import PERMISSIONS
from sonarly_api.cli.common import (
    Admin,
    JsonFlag,
    check_ids,
    fail,
    load_settings,
    maybe_iso,
    out,
    print_json,
    run_with_database,
)
from sonarly_api.durations import EXAMPLES, format_duration, parse_duration
from sonarly_api.timestamps import iso_millis, utcnow

app = typer.Typer(help="API keys.", no_args_is_help=True)

ExpiresIn = Annotated[
    str | None,
    typer.Option("--expires-in", help=f"Lifetime of the key ({EXAMPLES}); default: none."),
]


def _duration_option(
    value: str | None, option: str, *, allow_zero: bool = False
) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value, allow_zero=allow_zero)
    except ValueError as exc:
        fail(f"{option}: {exc}", code=2)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    account_group: Annotated[
        list[str], typer.Option("--account-group", help="Account group id (repeatable).")
    ],
    permission: Annotated[
        list[str],
        typer.Option("--permission", help=f"One of {', '.join(PERMISSIONS)} (repeatable)."),
    ],
    expires_in: ExpiresIn = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue an API key. The key is printed once and never stored."""
    name = name.strip()
    if not name:
        fail("--name must not be empty", code=2)
    lifetime = _duration_option(expires_in, "--expires-in")
    group_ids = check_ids(account_group, "--account-group")
    unknown_permissions = sorted(set(permission) - set(PERMISSIONS))
    if unknown_permissions:
        fail(
            f"--permission: unknown {', '.join(unknown_permissions)} "
            f"(known: {', '.join(PERMISSIONS)})",
            code=2,
        )
    secret = key_format.generate_key()

    async def work(admin: Admin) -> str | list[str]:
        async with admin.engine.begin() as conn:
            missing = sorted(set(group_ids) - await account_groups.existing_ids(conn, group_ids))
            if missing:
                return missing
            return await api_keys.create_key(
                conn,
                name=name,
                key_hash=key_format.hash_key(secret, admin.pepper),
                permissions=permission,
                account_group_ids=group_ids,
                expires_at=None if lifetime is None else utcnow() + lifetime,
            )

    result = run_with_database(work)
    if isinstance(result, list):
        fail(f"--account-group: no such account group: {', '.join(result)}")
    document: dict[str, Any] = {
        "id": result,
        "key": secret,
        "name": name,
        "permissions": sorted(set(permission)),
        "accountGroupIds": sorted(set(group_ids)),
    }
    if as_json:
        print_json(document)
        return
    out.print(f"created key [bold]{result}[/] ({escape(name)})", highlight=False)
    out.print(f"  permissions:    {', '.join(document['permissions'])}", highlight=False)
    out.print(f"  account groups: {', '.join(document['accountGroupIds'])}", highlight=False)
    if lifetime is not None:
        out.print(f"  expires in:     {format_duration(lifetime)}", highlight=False)
    _print_secret(secret)


def _print_secret(secret: str) -> None:
    out.print(f"\n  {secret}\n", style="bold green", highlight=False)
    out.print("Store it now: it is shown only this once.", style="yellow")


def key_json(key: api_keys.KeySummary) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "permissions": key.permissions,
        "accountGroupIds": key.account_group_ids,
        "createdAt": iso_millis(key.created_at),
        "lastUsedAt": maybe_iso(key.last_used_at),
        "revokedAt": maybe_iso(key.revoked_at),
        "expiresAt": maybe_iso(key.expires_at),
    }


@app.command("list")
def keys_list(as_json: JsonFlag = False) -> None:
    """List API keys (never their secrets)."""

    async def work(admin: Admin) -> list[api_keys.KeySummary]:
        async with admin.engine.connect() as conn:
            return await api_keys.list_keys(conn)

    rows = run_with_database(work)
    if as_json:
        print_json([key_json(k) for k in rows])
        return
    table = Table(
        "id", "name", "permissions", "account groups", "created", "last used", "expires", "revoked"
    )
    for k in rows:
        table.add_row(
            k.id,
            escape(k.name),
            ", ".join(k.permissions),
            ", ".join(k.account_group_ids),
            iso_millis(k.created_at),
            maybe_iso(k.last_used_at) or "",
            maybe_iso(k.expires_at) or "",
            maybe_iso(k.revoked_at) or "",
        )
    out.print(table)


@app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (not the key).")]) -> None:
    """Revoke a key. Running servers stop accepting it within KEY_CACHE_TTL_SECONDS."""
    (key_id,) = check_ids([key_id], "KEY_ID")

    async def work(admin: Admin) -> bool:
        async with admin.engine.begin() as conn:
            return await api_keys.revoke_key(conn, key_id)

    if not run_with_database(work):
        fail(f"no API key with id {key_id}")
    ttl = load_settings().key_cache_ttl_seconds
    out.print(f"revoked key {key_id} (running servers refuse it within {ttl:g} s)", highlight=False)


@app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (not the key).")],
    grace: Annotated[
        str,
        typer.Option(help=f"How long the old key keeps working ({EXAMPLES}, or 0)."),
    ] = "24h",
    expires_in: ExpiresIn = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace a key: a new secret with the same name, permissions and account groups. The
    old key keeps working for --grace, so clients can switch without an outage."""
    (key_id,) = check_ids([key_id], "KEY_ID")
    grace_period = _duration_option(grace, "--grace", allow_zero=True)
    assert grace_period is not None
    lifetime = _duration_option(expires_in, "--expires-in")
    secret = key_format.generate_key()

    async def work(admin: Admin) -> api_keys.Rotation | str:
        now = utcnow()
        try:
            async with admin.engine.begin() as conn:
                rotation = await api_keys.rotate_key(
                    conn,
                    key_id,
                    key_hash=key_format.hash_key(secret, admin.pepper),
                    grace=grace_period,
                    now=now,
                    expires_at=None if lifetime is None else now + lifetime,
                )
        except api_keys.KeyNotRotatable as exc:
            return str(exc)
        return f"no API key with id {key_id}" if rotation is None else rotation

    result = run_with_database(work)
    if isinstance(result, str):
        fail(result)
    old_expiry = iso_millis(result.old_key_expires_at)
    if as_json:
        print_json(
            {
                "id": result.key_id,
                "key": secret,
                "name": result.name,
                "permissions": result.permissions,
                "accountGroupIds": result.account_group_ids,
                "replaces": key_id,
                "oldKeyExpiresAt": old_expiry,
            }
        )
        return
    out.print(
        f"rotated key {key_id}: new key [bold]{result.key_id}[/] ({escape(result.name)})",
        highlight=False,
    )
    out.print(f"  permissions:    {', '.join(result.permissions)}", highlight=False)
    out.print(f"  account groups: {', '.join(result.account_group_ids)}", highlight=False)
    if lifetime is not None:
        out.print(f"  expires in:     {format_duration(lifetime)}", highlight=False)
    # A server that cached the old key before the rotation learns its expiry within the TTL.
    ttl = load_settings().key_cache_ttl_seconds
    out.print(
        f"  old key {key_id} stops working at {old_expiry} (running servers: within {ttl:g} s)",
        highlight=False,
    )
    _print_secret(secret)
