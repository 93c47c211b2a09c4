"""Credits under concurrency, on real connections: the per-group row lock serialises the
operations of one group, so the last credits go to exactly one job and the totals always
equal what the ledger says."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sonarly_api.credits import service as credits
from tests.credits.helpers import (
    Totals,
    job,
    ledger_sums,
    new_group,
    open_reservations,
    totals,
)


async def waiting_for_a_lock(engine: AsyncEngine, pid: int) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
            {"pid": pid},
        )
    return bool(waiting)


async def backend_pid(conn: AsyncConnection) -> int:
    pid = await conn.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


class TestLastCredits:
    async def test_second_reserve_waits_then_finds_too_little(self, engine: AsyncEngine) -> None:
        """A holds the lock with its reservation uncommitted; B waits for it, and once A commits
        B sees what is left, not the balance it would have read before."""
        group = await new_group(engine, credits=10)
        first, second = job(), job()
        async with engine.connect() as a, engine.connect() as b:
            await a.begin()
            await b.begin()
            await credits.reserve(a, group, first, 8)
            b_pid = await backend_pid(b)
            racing = asyncio.create_task(credits.reserve(b, group, second, 8))
            for _ in range(200):
                if await waiting_for_a_lock(engine, b_pid):
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the second reservation did not wait for the first")
            assert not racing.done()
            await a.commit()
            with pytest.raises(credits.InsufficientCredits) as caught:
                await racing
            await b.rollback()
        assert caught.value.details == "requires 8 credits, 2 available"
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=10, reserved=8)

    @pytest.mark.parametrize("racers", [2, 6])
    async def test_exactly_one_wins(self, engine: AsyncEngine, racers: int) -> None:
        group = await new_group(engine, credits=10)
        start = asyncio.Event()

        async def attempt() -> bool:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))  # connected before the start signal
                await conn.commit()
                await start.wait()
                try:
                    async with conn.begin():
                        await credits.reserve(conn, group, job(), 10)
                except credits.InsufficientCredits:
                    return False
                return True

        tasks = [asyncio.create_task(attempt()) for _ in range(racers)]
        await asyncio.sleep(0.05)
        start.set()
        outcomes = await asyncio.gather(*tasks)

        assert outcomes.count(True) == 1
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=10, reserved=10)
            assert (await ledger_sums(conn, group))["reserve"] == 10

    async def test_a_page_charged_twice_at_once_is_charged_once(self, engine: AsyncEngine) -> None:
        group, job_id = await new_group(engine, credits=10), job()
        async with engine.begin() as conn:
            await credits.reserve(conn, group, job_id, 10)

        async def charge() -> bool:
            async with engine.begin() as conn:
                return await credits.charge(conn, group, job_id, f"{job_id}:page:1", 4)

        outcomes = await asyncio.gather(*(charge() for _ in range(4)))

        assert sorted(outcomes) == [False, False, False, True]
        async with engine.connect() as conn:
            assert await totals(conn, group) == Totals(balance=6, reserved=6)


class TestManyAtOnce:
    async def test_totals_always_match_the_ledger(self, engine: AsyncEngine) -> None:
        """Workers grant, reserve, charge pages (some replayed) and release at random, each
        operation in its own transaction; some transactions roll back. At the end the balance
        is grants - charges, reserved is what open reservations hold, and neither went below
        zero on the way (the CHECKs would have failed a statement)."""
        group = await new_group(engine, credits=50)
        rng = random.Random(20261204)
        granted = [50]
        charged: list[int] = []

        async def worker(seed: int) -> None:
            r = random.Random(seed)
            for _ in range(12):
                job_id = job()
                async with engine.begin() as conn:
                    amount = r.randint(1, 5)
                    await credits.grant(conn, group, amount, "top-up")
                    granted.append(amount)
                size = r.randint(1, 30)
                try:
                    async with engine.begin() as conn:
                        await credits.reserve(conn, group, job_id, size)
                except credits.InsufficientCredits:
                    continue
                left = size
                for page in range(r.randint(0, 3)):
                    amount = r.randint(0, left)
                    for _replay in range(r.choice((1, 1, 2))):
                        async with engine.begin() as conn:
                            if (
                                await credits.charge(
                                    conn, group, job_id, f"{job_id}:page:{page}", amount
                                )
                                and amount
                            ):
                                charged.append(amount)
                    left -= amount
                    await asyncio.sleep(0)
                if r.random() < 0.2:
                    # A page that fails after charging: its transaction rolls back, nothing moves.
                    async with engine.connect() as conn, conn.begin() as tx:
                        await credits.charge(conn, group, job_id, f"{job_id}:lost", left)
                        await tx.rollback()
                if r.random() < 0.8:
                    async with engine.begin() as conn:
                        await credits.release(conn, group, job_id)

        await asyncio.gather(*(worker(rng.randrange(1 << 30)) for _ in range(8)))

        async with engine.connect() as conn:
            now = await totals(conn, group)
            sums = await ledger_sums(conn, group)
            assert now.balance == sum(granted) - sum(charged)
            assert now.balance == sums["grant"] - sums.get("charge", 0)
            assert now.reserved == await open_reservations(conn, group)
            assert 0 <= now.reserved <= now.balance
            # Some jobs were left open (not released): reserved counts exactly those.
            view = await credits.show(conn, group, limit=0)
            assert view.available == now.balance - now.reserved
        assert charged, "no page was charged: the test exercised nothing"
