"""What `show` returns: the balance and the last ledger entries, camelCase on the wire."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sonarly_api.envelope import CamelModel

EntryKind = Literal["grant", "reserve", "charge", "release"]


class LedgerEntryView(CamelModel):
    kind: EntryKind
    amount: int = Field(examples=[500])
    job_id: str | None = Field(examples=[None])
    note: str | None = Field(examples=["initial grant"])
    created_at: str = Field(examples=["2026-04-28T15:30:00.000Z"])


class CreditsView(CamelModel):
    balance: int = Field(examples=[1000])
    reserved: int = Field(examples=[200])
    available: int = Field(examples=[800], description="balance - reserved")
    entries: list[LedgerEntryView] = Field(description="The last ledger entries, newest first.")
