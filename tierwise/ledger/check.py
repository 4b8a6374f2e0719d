"""The money invariant: every budget's usage is exactly its ledger charges plus live holds.

For each ``budget_usage`` row (a scope and a period):

    spent_nusd    == Σ usd_modelled of the requests recorded in it (in nano-dollars)
    reserved_nusd == Σ amount_nusd of the live holds on it

A request is "in" a scope's period when its day falls in it, and, for ``key:NAME``,
when its API key is NAME (``global`` takes every key). Both sides are integers of
nano-dollars, so equality is exact. It holds for requests recorded while the budget was
configured; a limit added mid-period sees earlier, uncharged requests as a mismatch, which
is what they are from that budget's point of view.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from tierwise.ledger.schema import budget_usage, holds, requests
from tierwise.ledger.store import Ledger


@dataclass(frozen=True)
class Balance:
    """One budget row against what the ledger says it should hold, in nano-dollars."""

    scope: str
    period: str
    spent_nusd: int
    charged_nusd: int  # Σ of the records' charges
    reserved_nusd: int
    held_nusd: int  # Σ of the live holds
    holds: int

    @property
    def ok(self) -> bool:
        return self.spent_nusd == self.charged_nusd and self.reserved_nusd == self.held_nusd

    def mismatch(self) -> str:
        parts = []
        if self.spent_nusd != self.charged_nusd:
            parts.append(
                f"spent ${self.spent_nusd / 1e9:.9f} but its records charge "
                f"${self.charged_nusd / 1e9:.9f}"
            )
        if self.reserved_nusd != self.held_nusd:
            parts.append(
                f"reserved ${self.reserved_nusd / 1e9:.9f} but its {self.holds} live holds "
                f"are ${self.held_nusd / 1e9:.9f}"
            )
        return f"{self.scope} {self.period}: " + "; ".join(parts)


def balances(ledger: Ledger) -> list[Balance]:
    """Every budget row, balanced against the records and the holds."""
    charged: dict[tuple[str, str], int] = defaultdict(int)
    held: dict[tuple[str, str], int] = defaultdict(int)
    counted: dict[tuple[str, str], int] = defaultdict(int)
    r, h, b = requests.c, holds.c, budget_usage.c
    with ledger.engine.connect() as conn:
        for key, day, usd in conn.execute(select(r.api_key, r.day, r.usd_modelled)):
            nusd = round(usd * 1e9)
            if not nusd:
                continue
            for scope in ("global", f"key:{key}"):
                charged[scope, f"day:{day}"] += nusd
                charged[scope, f"month:{day[:7]}"] += nusd
        for amount, scopes in conn.execute(select(h.amount_nusd, h.scopes)):
            for scope, period in json.loads(scopes):
                held[scope, period] += int(amount)
                counted[scope, period] += 1
        rows = conn.execute(
            select(b.scope, b.period, b.spent_nusd, b.reserved_nusd).order_by(b.scope, b.period)
        ).all()
    return [
        Balance(
            scope,
            period,
            int(spent),
            charged[scope, period],
            int(reserved),
            held[scope, period],
            counted[scope, period],
        )
        for scope, period, spent, reserved in rows
    ]


def mismatches(ledger: Ledger) -> list[str]:
    """What does not balance, one line each; empty when the invariant holds."""
    return [x.mismatch() for x in balances(ledger) if not x.ok]
