"""credits.service on a real PostgreSQL: each operation, its ledger entry, its replays."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sonarly_api.accounts import repository as account_groups
from sonarly_api.accounts import service as accounts
from sonarly_api.credits import service as credits
from sonarly_api.credits.plans import MAX_RESULTS_CAP, PLANS, parse_plan
from sonarly_api.ids import new_id
from tests.credits.helpers import Totals, job, ledger, new_group, totals

ISO_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


class TestPlans:
    def test_words_and_caps(self) -> None:
        assert PLANS == ("tester", "starter", "scale", "enterprise")
        assert MAX_RESULTS_CAP == {
            "tester": 100,
            "starter": 1000,
            "scale": 2000,
            "enterprise": 2000,
        }

    def test_parse(self) -> None:
        assert parse_plan(" Scale ") == "scale"
        with pytest.raises(ValueError, match="unknown plan 'gold'"):
            parse_plan("gold")


class TestCreateGroup:
    async def test_default_plan_no_credits(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            row = await accounts.create(conn, "plain")
            assert row.plan == "starter"
            assert await account_groups.plan_of(conn, row.id) == "starter"
            assert await totals(conn, row.id) == Totals(balance=0, reserved=0)
            assert await ledger(conn, row.id) == []

    async def test_plan_and_initial_grant(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            row = await accounts.create(conn, "rich", "enterprise", 5000)
            assert await account_groups.plan_of(conn, row.id) == "enterprise"
            assert await totals(conn, row.id) == Totals(balance=5000, reserved=0)
            assert await ledger(conn, row.id) == [("grant", 5000, None, None)]
            view = await credits.show(conn, row.id)
        assert view.entries[0].note == "initial grant"

    async def test_unknown_plan_and_negative_credits(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            with pytest.raises(ValueError, match="unknown plan"):
                await accounts.create(conn, "x", "gold")
            with pytest.raises(ValueError, match="negative"):
                await accounts.create(conn, "x", "tester", -1)

    async def test_database_refuses_another_plan_word(self, engine: AsyncEngine) -> None:
        group = await new_group(engine)
        with pytest.raises(IntegrityError, match="ck_account_groups_plan_known"):
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE account_groups SET plan = 'gold' WHERE id = :g"), {"g": group}
                )

    async def test_unknown_group(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            assert await account_groups.plan_of(conn, new_id()) is None


class TestGrant:
    async def test_adds_to_the_balance(self, engine: AsyncEngine) -> None:
        group = await new_group(engine, credits=10)
        async with engine.begin() as conn:
            await credits.grant(conn, group, 90, "invoice 42")
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=100, reserved=0)
            assert await ledger(conn, group) == [
                ("grant", 10, None, None),
                ("grant", 90, None, None),
            ]

    async def test_same_entry_key_grants_once(self, engine: AsyncEngine) -> None:
        group = await new_group(engine)
        for _ in range(2):
            async with engine.begin() as conn:
                await credits.grant(conn, group, 50, entry_key=f"{group}:welcome")
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=50, reserved=0)
            assert len(await ledger(conn, group)) == 1

    @pytest.mark.parametrize("amount", [0, -5])
    async def test_amount_must_be_positive(self, engine: AsyncEngine, amount: int) -> None:
        group = await new_group(engine)
        async with engine.begin() as conn:
            with pytest.raises(ValueError, match="positive"):
                await credits.grant(conn, group, amount)
            assert await ledger(conn, group) == []

    async def test_unknown_group(self, engine: AsyncEngine) -> None:
        missing = new_id()
        async with engine.begin() as conn:
            with pytest.raises(credits.UnknownAccountGroup) as caught:
                await credits.grant(conn, missing, 5)
        assert caught.value.status == 404
        assert caught.value.details == f"no account group {missing}"

    async def test_rolls_back_with_the_callers_transaction(self, engine: AsyncEngine) -> None:
        group = await new_group(engine, credits=5)
        async with engine.connect() as conn:
            async with conn.begin() as tx:
                await credits.grant(conn, group, 100)
                await tx.rollback()
            assert await totals(conn, group) == Totals(balance=5, reserved=0)
            assert len(await ledger(conn, group)) == 1


class TestReserve:
    async def test_sets_credits_aside(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 60)
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=100, reserved=60)
            assert (await ledger(conn, group))[-1] == ("reserve", 60, job_id, f"{job_id}:reserve")
            view = await credits.show(conn, group)
        assert (view.balance, view.reserved, view.available) == (100, 60, 40)

    async def test_second_reserve_of_a_job_is_a_no_op(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 60)
            await credits.reserve(conn, group, job_id, 60)
            # Even one that would not fit: the job holds its reservation already.
            await credits.reserve(conn, group, job_id, 90)
            assert await totals(conn, group) == Totals(balance=100, reserved=60)

    async def test_insufficient_credits(self, engine: AsyncEngine) -> None:
        group = await new_group(engine, credits=100)
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job(), 70)
        async with engine.begin() as conn:
            with pytest.raises(credits.InsufficientCredits) as caught:
                await credits.reserve(conn, group, job(), 31)
            # Exactly what is available fits.
            await credits.reserve(conn, group, job(), 30)
        error = caught.value
        assert (error.status, error.code) == (402, "INSUFFICIENT_CREDITS")
        assert error.details == "requires 31 credits, 30 available"
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=100, reserved=100)
            assert [e[0] for e in await ledger(conn, group)] == ["grant", "reserve", "reserve"]

    async def test_group_without_credits(self, engine: AsyncEngine) -> None:
        group = await new_group(engine)
        async with engine.begin() as conn:
            with pytest.raises(credits.InsufficientCredits, match="requires 1 credits, 0 avail"):
                await credits.reserve(conn, group, job(), 1)

    async def test_amount_must_be_positive(self, engine: AsyncEngine) -> None:
        group = await new_group(engine, credits=10)
        async with engine.begin() as conn:
            with pytest.raises(ValueError, match="positive"):
                await credits.reserve(conn, group, job(), 0)


class TestCharge:
    async def test_moves_from_reserved_to_spent(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 50)
            assert await credits.charge(conn, group, job_id, f"{job_id}:page:1", 20)
            assert await totals(conn, group) == Totals(balance=80, reserved=30)
            assert await credits.job_credits(conn, group, job_id) == (50, 20)
            assert (await ledger(conn, group))[-1] == ("charge", 20, job_id, f"{job_id}:page:1")

    async def test_replayed_page_charges_once(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 50)
        for expected in (True, False):
            async with engine.begin() as conn:
                assert await credits.charge(conn, group, job_id, f"{job_id}:page:1", 20) is expected
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=80, reserved=30)
            assert await credits.job_credits(conn, group, job_id) == (50, 20)

    async def test_zero_is_free_and_leaves_no_entry(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=10), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 5)
            assert await credits.charge(conn, group, job_id, f"{job_id}:page:1", 0) is True
            assert len(await ledger(conn, group)) == 2
            # The key was not used: the page may still be charged for real.
            assert await credits.charge(conn, group, job_id, f"{job_id}:page:1", 5) is True

    async def test_never_more_than_the_reservation(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 10)
            assert await credits.charge(conn, group, job_id, f"{job_id}:page:1", 7)
            with pytest.raises(ValueError, match=r"exceeds .* remaining reservation of 3"):
                await credits.charge(conn, group, job_id, f"{job_id}:page:2", 4)
            assert await credits.charge(conn, group, job_id, f"{job_id}:page:2", 3)
            assert await totals(conn, group) == Totals(balance=90, reserved=0)

    async def test_job_without_reservation(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            with pytest.raises(ValueError, match="remaining reservation of 0"):
                await credits.charge(conn, group, job_id, f"{job_id}:page:1", 1)
            with pytest.raises(ValueError, match="negative"):
                await credits.charge(conn, group, job_id, f"{job_id}:page:1", -1)

    async def test_other_groups_reservation_does_not_count(self, engine: AsyncEngine) -> None:
        mine, other, job_id = await new_group(engine, 10), await new_group(engine, 10), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, other, job_id, 10)
            with pytest.raises(ValueError, match="remaining reservation of 0"):
                await credits.charge(conn, mine, job_id, f"{job_id}:page:1", 1)


class TestRelease:
    async def test_gives_back_the_rest_once(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 50)
            await credits.charge(conn, group, job_id, f"{job_id}:page:1", 12)
        async with engine.begin() as conn:
            assert await credits.release(conn, group, job_id) == 38
        async with engine.begin() as conn:
            assert await credits.release(conn, group, job_id) == 0
            assert await totals(conn, group) == Totals(balance=88, reserved=0)
            assert await credits.job_credits(conn, group, job_id) == (50, 12)
            assert [e[:2] for e in await ledger(conn, group)] == [
                ("grant", 100),
                ("reserve", 50),
                ("charge", 12),
                ("release", 38),
            ]
            # Nothing is left to charge once released.
            with pytest.raises(ValueError, match="remaining reservation of 0"):
                await credits.charge(conn, group, job_id, f"{job_id}:page:2", 1)

    async def test_fully_charged_job_releases_nothing(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=10), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 10)
            await credits.charge(conn, group, job_id, f"{job_id}:page:1", 10)
            assert await credits.release(conn, group, job_id) == 0
            assert await totals(conn, group) == Totals(balance=0, reserved=0)
            assert [e[0] for e in await ledger(conn, group)] == ["grant", "reserve", "charge"]

    async def test_unknown_job(self, engine: AsyncEngine) -> None:
        group = await new_group(engine, credits=10)
        async with engine.begin() as conn:
            assert await credits.release(conn, group, job()) == 0
            assert await credits.job_credits(conn, group, job()) == (0, 0)


class TestShow:
    async def test_newest_first_with_a_limit(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=100), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 30)
        async with engine.begin() as conn:
            await credits.charge(conn, group, job_id, f"{job_id}:page:1", 4)
        async with engine.begin() as conn:
            await credits.release(conn, group, job_id)
        async with engine.connect() as conn:
            view = await credits.show(conn, group, limit=3)
        assert (view.balance, view.reserved, view.available) == (96, 0, 96)
        assert [(e.kind, e.amount, e.job_id) for e in view.entries] == [
            ("release", 26, job_id),
            ("charge", 4, job_id),
            ("reserve", 30, job_id),
        ]
        assert all(ISO_MILLIS.fullmatch(e.created_at) for e in view.entries)
        document = view.model_dump(mode="json", by_alias=True)
        assert set(document) == {"balance", "reserved", "available", "entries"}
        assert set(document["entries"][0]) == {"kind", "amount", "jobId", "note", "createdAt"}

    async def test_unknown_group(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            with pytest.raises(credits.UnknownAccountGroup):
                await credits.show(conn, new_id())

    async def test_group_older_than_its_balance_row(self, engine: AsyncEngine) -> None:
        """A group created before revision 0004 added balance rows (or by plain SQL)."""
        group = new_id()
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO account_groups (id, name) VALUES (:g, 'old')"), {"g": group}
            )
            view = await credits.show(conn, group)
            assert (view.balance, view.reserved, view.entries) == (0, 0, [])
            await credits.grant(conn, group, 7)
            assert await totals(conn, group) == Totals(balance=7, reserved=0)


class TestDatabaseChecks:
    """The balance row's CHECKs hold even against SQL that skips the service."""

    @pytest.mark.parametrize(
        ("assignment", "constraint"),
        [
            ("balance = -1, reserved = 0", "balance_not_negative"),
            ("reserved = -1", "reserved_not_negative"),
            ("reserved = balance + 1", "reserved_within_balance"),
        ],
    )
    async def test_refused(self, engine: AsyncEngine, assignment: str, constraint: str) -> None:
        group = await new_group(engine, credits=5)
        with pytest.raises(IntegrityError, match=f"ck_credit_balances_{constraint}"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(f"UPDATE credit_balances SET {assignment} WHERE account_group_id = :g"),
                    {"g": group},
                )

    @pytest.mark.parametrize(
        ("kind", "amount", "constraint"),
        [("grant", 0, "amount_positive"), ("refund", 5, "kind_known")],
    )
    async def test_ledger_entries(
        self, engine: AsyncEngine, kind: str, amount: int, constraint: str
    ) -> None:
        group = await new_group(engine)
        with pytest.raises(IntegrityError, match=f"ck_credit_ledger_{constraint}"):
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO credit_ledger (account_group_id, kind, amount)"
                        " VALUES (:g, :k, :a)"
                    ),
                    {"g": group, "k": kind, "a": amount},
                )

    async def test_deleting_a_group_deletes_its_credits(self, engine: AsyncEngine) -> None:
        group = await new_group(engine, credits=5)
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM account_groups WHERE id = :g"), {"g": group})
            left = await conn.scalar(
                text(
                    "SELECT (SELECT count(*) FROM credit_balances WHERE account_group_id = :g)"
                    " + (SELECT count(*) FROM credit_ledger WHERE account_group_id = :g)"
                ),
                {"g": group},
            )
        assert left == 0
