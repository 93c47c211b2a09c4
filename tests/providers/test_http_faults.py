"""Each upstream fault, against the real fake provider: how many attempts, which waits, which
failure class, and that a call never outlives its deadline nor leaks the provider's text."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from pydantic import SecretStr

from sonarly_api.providers.base import ProviderAccount, ProviderError
from sonarly_api.providers.calls import Backoff
from sonarly_api.providers.http import HttpProvider, HttpProviderOptions
from tests.fakeprovider import RAW_MESSAGE, FakeProvider, make_profiles
from tests.servers import free_port
from tests.support import HTTP_PROVIDER_OPTIONS as OPTIONS
from tests.support import PROVIDER_ACCOUNT as ACCOUNT

OTHER = ProviderAccount("1" * 24, "acc-2")


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.reset()
    for account in ("acc-1", "acc-2"):
        server.account(account).lead_lists["ll-1"] = ("CTOs", make_profiles("cto", 60))
    return server


async def fails(provider: HttpProvider, account: ProviderAccount = ACCOUNT) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.lead_list_page(account, "ll-1", None)
    return caught.value


def assert_safe(error: ProviderError, fake: FakeProvider) -> None:
    assert error.message.startswith(f"{error.failure}: ")
    for leak in (RAW_MESSAGE, "127.0.0.1", fake.token, "/v1/accounts"):
        assert leak not in error.message


def page_requests(fake: FakeProvider) -> int:
    return len(fake.requests_to("/members"))


class TestRetried:
    @pytest.mark.parametrize("kind", ["500", "503", "drop", "429"])
    async def test_transient_fault_then_success(
        self, provider: HttpProvider, fake: FakeProvider, kind: str
    ) -> None:
        fake.fault(kind, times=2)  # type: ignore[arg-type]

        page = await provider.lead_list_page(ACCOUNT, "ll-1", None)

        assert len(page.profiles) == 25
        assert page_requests(fake) == 3

    async def test_slow_answer_times_out_and_is_retried(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        fake.fault("slow", delay=1.0)

        page = await provider.lead_list_page(ACCOUNT, "ll-1", None)

        assert len(page.profiles) == 25
        assert page_requests(fake) == 2

    async def test_retry_after_is_honoured(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        fake.fault("429", retry_after="1")

        await provider.lead_list_page(ACCOUNT, "ll-1", None)

        first, second = fake.requests_to("/members")
        assert second.at - first.at >= 1.0


class TestGivesUp:
    @pytest.mark.parametrize(
        ("kind", "failure"),
        [("500", "bad_answer"), ("drop", "refused"), ("429", "rate_limited")],
    )
    async def test_after_the_last_attempt(
        self, provider: HttpProvider, fake: FakeProvider, kind: str, failure: str
    ) -> None:
        fake.fault(kind, times=None)  # type: ignore[arg-type]

        error = await fails(provider)

        assert (error.code, error.failure) == ("UPSTREAM_ERROR", failure)
        assert page_requests(fake) == OPTIONS.max_attempts
        assert_safe(error, fake)

    async def test_slow_provider_fails_with_timeout_within_the_deadline(
        self, fake: FakeProvider
    ) -> None:
        options = HttpProviderOptions(
            timeout_seconds=0.4, max_attempts=10, deadline_seconds=1.0, backoff=Backoff(0.01, 0.05)
        )
        adapter = HttpProvider(fake.url, SecretStr(fake.token), options)
        fake.fault("slow", delay=2.0, times=None)
        started = time.monotonic()
        try:
            error = await fails(adapter)
        finally:
            await adapter.aclose()

        assert (error.code, error.failure) == ("UPSTREAM_ERROR", "timeout")
        # The deadline, not the ten attempts, ended it: three attempts fit in one second.
        assert time.monotonic() - started < 1.5
        assert 2 <= page_requests(fake) <= 3
        assert_safe(error, fake)

    async def test_retry_after_beyond_the_deadline_fails_at_once(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        fake.fault("429", retry_after="60")
        started = time.monotonic()

        error = await fails(provider)

        assert error.failure == "rate_limited"
        assert page_requests(fake) == 1
        assert time.monotonic() - started < OPTIONS.deadline_seconds

    async def test_connection_refused(self, fake: FakeProvider) -> None:
        adapter = HttpProvider(f"http://127.0.0.1:{free_port()}/v1", SecretStr("x"), OPTIONS)
        try:
            error = await fails(adapter)
        finally:
            await adapter.aclose()

        assert (error.code, error.failure) == ("UPSTREAM_ERROR", "refused")
        assert "127.0.0.1" not in error.message


class TestFinalAtOnce:
    @pytest.mark.parametrize(
        ("kind", "code", "failure"),
        [
            ("malformed", "UPSTREAM_ERROR", "bad_answer"),
            ("wrong_shape", "UPSTREAM_ERROR", "bad_answer"),
            ("disconnected", "LINKEDIN_DISCONNECTED", "disconnected"),
            ("restricted", "LINKEDIN_DISCONNECTED", "disconnected"),
            ("not_found", "SOURCE_NOT_FOUND", "not_found"),
            ("unauthorized", "UPSTREAM_ERROR", "refused"),
        ],
    )
    async def test_not_retried(
        self, provider: HttpProvider, fake: FakeProvider, kind: str, code: str, failure: str
    ) -> None:
        fake.fault(kind)  # type: ignore[arg-type]

        error = await fails(provider)

        assert (error.code, error.failure) == (code, failure)
        assert page_requests(fake) == 1
        assert_safe(error, fake)

    async def test_unknown_provider_account_is_a_disconnected_account(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        error = await fails(provider, ProviderAccount("2" * 24, "acc-unknown"))

        assert (error.code, error.failure) == ("LINKEDIN_DISCONNECTED", "disconnected")

    async def test_wrong_token(self, fake: FakeProvider) -> None:
        adapter = HttpProvider(fake.url, SecretStr("not-the-token"), OPTIONS)
        try:
            error = await fails(adapter)
        finally:
            await adapter.aclose()

        assert (error.code, error.failure) == ("UPSTREAM_ERROR", "refused")
        assert fake.requests[-1].headers["authorization"] == "Bearer not-the-token"
        assert page_requests(fake) == 1

    async def test_account_without_provider_account_is_not_connected(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        error = await fails(provider, ProviderAccount("3" * 24, None))

        assert (error.code, error.failure) == ("LINKEDIN_NOT_CONNECTED", "not_connected")
        assert fake.requests == []


class TestConcurrency:
    async def test_never_more_in_flight_per_account_than_the_bound(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        fake.fault("slow", delay=0.1, times=None)

        await asyncio.gather(*(provider.lead_list_page(ACCOUNT, "ll-1", None) for _ in range(8)))

        assert page_requests(fake) == 8
        assert fake.max_in_flight["acc-1"] == OPTIONS.account_concurrency

    async def test_a_busy_account_does_not_hold_up_another(
        self, provider: HttpProvider, fake: FakeProvider
    ) -> None:
        fake.fault("slow", delay=0.2, times=None)
        finished: list[str] = []

        async def read(account: ProviderAccount) -> None:
            await provider.lead_list_page(account, "ll-1", None)
            finished.append(account.provider_account_id or "")

        busy = [asyncio.create_task(read(ACCOUNT)) for _ in range(8)]
        await asyncio.sleep(0.05)  # the busy account's calls are queued on its slots first
        await read(OTHER)
        await asyncio.gather(*busy)

        # acc-2 got a slot of its own at once, not after acc-1's queue of eight (four rounds).
        assert finished.index("acc-2") < 4
        assert fake.max_in_flight["acc-2"] == 1

    async def test_cancelling_a_waiting_call_frees_its_slot(self, fake: FakeProvider) -> None:
        options = HttpProviderOptions(account_concurrency=1, deadline_seconds=30.0)
        adapter = HttpProvider(fake.url, SecretStr(fake.token), options)
        fake.fault("429", retry_after="20")
        try:
            waiting = asyncio.create_task(adapter.lead_list_page(ACCOUNT, "ll-1", None))
            # The fake runs in another thread: polling is the plain way to wait for it.
            while page_requests(fake) == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # The one slot is free again: the next call is served now, not in 20 s.
            page = await asyncio.wait_for(adapter.lead_list_page(ACCOUNT, "ll-1", None), 5)
        finally:
            await adapter.aclose()

        assert len(page.profiles) == 25


class TestSecrets:
    async def test_token_in_no_log_line(
        self, provider: HttpProvider, fake: FakeProvider, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        fake.fault("500", times=None)

        await fails(provider)

        assert "provider call gave up" in caplog.text
        assert fake.token not in caplog.text
        assert RAW_MESSAGE not in caplog.text
