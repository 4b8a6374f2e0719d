"""The ledger: durable request records, atomic budgets and stored profiles.

SQLite (in WAL mode) by default, through SQLAlchemy so that PostgreSQL can follow.
Budgets are enforced with reservations: before a paid attempt, its upper-bound cost is
added to ``reserved_usd`` by one conditional UPDATE per budget scope, all in one
transaction; the UPDATE only matches while ``spent + reserved + amount <= limit``. When
the attempt ends, the reservation is replaced by what it really cost, in the same
transaction that writes the request's record. However many requests run at once, spent
money can never pass a limit.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tierwise.errors import BudgetExceeded
from tierwise.ledger.schema import budget_usage, create_or_upgrade, profiles, requests, runs


@dataclass(frozen=True)
class BudgetScope:
    """One limit: ``scope`` is "global" or "key:NAME"; ``period`` "day:…" or "month:…"."""

    scope: str
    period: str
    limit_usd: float


@dataclass(frozen=True)
class Reservation:
    amount: float
    scopes: tuple[BudgetScope, ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class RequestRecord:
    id: str
    created_at: float
    api_key: str
    task: str
    model: str
    plan: str
    tiers: str
    status: str
    tokens_in: int = 0
    tokens_out: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    latency_ms: float = 0.0
    predicted_latency_ms: float = 0.0
    usd_modelled: float = 0.0
    predicted_usd_modelled: float = 0.0
    cloud_usd_modelled: float = 0.0
    joules_modelled: float = 0.0
    #: compute joules read from RAPL on every node used; None where one had no counter
    joules_measured: float | None = None
    predicted_joules_modelled: float = 0.0
    quality: float | None = None
    offline: bool = False
    attempts: int = 1
    error: str | None = None
    explain: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the plain-language run this was a step of

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.created_at))


@dataclass
class RunRecord:
    """A plain-language run: what was asked, how it was planned, how it ended."""

    id: str
    created_at: float
    api_key: str
    request: str
    planner: str
    status: str  # ok (every step ran), partial (some failed or were not served), error
    usd_modelled: float = 0.0
    latency_ms: float = 0.0
    answer: str | None = None
    explain: dict[str, Any] = field(default_factory=dict)  # the graph, the steps, notes


def _nusd(usd: float) -> int:
    return round(usd * 1e9)


def _reserve_nusd(usd: float) -> int:
    """Reservations round up, so a reservation always covers what it stands for."""
    return math.ceil(usd * 1e9)


def periods(now: float) -> tuple[str, str]:
    """The budget periods ``now`` falls in (UTC): ("day:YYYY-MM-DD", "month:YYYY-MM")."""
    t = time.gmtime(now)
    return time.strftime("day:%Y-%m-%d", t), time.strftime("month:%Y-%m", t)


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        create_or_upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction (on SQLite it holds the write lock from its first statement)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(tierwise_write=True)
            with conn.begin():
                yield conn

    # -- budgets -------------------------------------------------------------

    def reserve(self, scopes: Sequence[BudgetScope], amount: float) -> Reservation:
        """Hold ``amount`` USD against every scope, or none of them (raises BudgetExceeded)."""
        reservation = Reservation(amount, tuple(scopes))
        if amount <= 0 or not scopes:
            return reservation
        held = _reserve_nusd(amount)
        with self._tx() as conn:
            for s in scopes:
                self._ensure_row(conn, s)
                c = budget_usage.c
                result = conn.execute(
                    update(budget_usage)
                    .where(c.scope == s.scope, c.period == s.period)
                    .where(c.spent_nusd + c.reserved_nusd + held <= c.limit_nusd)
                    .values(reserved_nusd=c.reserved_nusd + held)
                )
                if result.rowcount != 1:
                    spent, reserved = self._usage(conn, s)
                    raise BudgetExceeded(
                        f"budget {s.scope} for {s.period} would be exceeded: limit "
                        f"${s.limit_usd:.4f}, spent ${spent:.4f}, in flight ${reserved:.4f}, "
                        f"this request may cost up to ${amount:.6f}"
                    )
        return reservation

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace a reservation by what the attempt really cost."""
        if reservation.scopes and (reservation.amount > 0 or actual_usd > 0):
            with self._tx() as conn:
                self._settle(conn, reservation, actual_usd)

    def _settle(self, conn: Connection, r: Reservation, actual: float) -> None:
        held = _reserve_nusd(r.amount) if r.amount > 0 else 0
        c = budget_usage.c
        for s in r.scopes:
            self._ensure_row(conn, s)
            conn.execute(
                update(budget_usage)
                .where(c.scope == s.scope, c.period == s.period)
                .values(
                    reserved_nusd=c.reserved_nusd - held,
                    spent_nusd=c.spent_nusd + _nusd(actual),
                )
            )

    def usage(self, scope: BudgetScope) -> tuple[float, float]:
        """(spent, reserved) USD for a scope and period."""
        with self.engine.connect() as conn:
            return self._usage(conn, scope)

    def _usage(self, conn: Connection, s: BudgetScope) -> tuple[float, float]:
        c = budget_usage.c
        row = conn.execute(
            select(c.spent_nusd, c.reserved_nusd).where(c.scope == s.scope, c.period == s.period)
        ).first()
        return (row[0] / 1e9, row[1] / 1e9) if row else (0.0, 0.0)

    def _ensure_row(self, conn: Connection, s: BudgetScope) -> None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        limit = _nusd(s.limit_usd)
        conn.execute(
            insert(budget_usage)
            .values(scope=s.scope, period=s.period, limit_nusd=limit, spent_nusd=0, reserved_nusd=0)
            .on_conflict_do_nothing()
        )
        c = budget_usage.c
        # A limit changed in config applies from now on.
        conn.execute(
            update(budget_usage)
            .where(c.scope == s.scope, c.period == s.period, c.limit_nusd != limit)
            .values(limit_nusd=limit)
        )

    # -- records -------------------------------------------------------------

    def record(
        self, rec: RequestRecord, settle: Reservation | None = None, actual_usd: float = 0.0
    ) -> None:
        """Write one request's record, settling its last reservation in the same transaction."""
        row = asdict(rec)
        row["explain"] = json.dumps(rec.explain, default=str)
        row["day"] = rec.day
        with self._tx() as conn:
            if settle is not None:
                self._settle(conn, settle, actual_usd)
            conn.execute(requests.insert().values(**row))

    def get(self, request_id: str) -> RequestRecord | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(requests).where(requests.c.id == request_id)).mappings().first()
            )
        if row is None:
            return None
        data = dict(row)
        data.pop("day")
        data["explain"] = json.loads(data["explain"] or "{}")
        return RequestRecord(**data)

    def record_run(self, run: RunRecord) -> None:
        row = asdict(run)
        row["explain"] = json.dumps(run.explain, default=str)
        with self._tx() as conn:
            conn.execute(runs.insert().values(**row))

    def get_run(self, run_id: str) -> tuple[RunRecord, list[RequestRecord]] | None:
        """A run and its steps' records, oldest first."""
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
            steps = conn.execute(
                select(requests.c.id)
                .where(requests.c.run_id == run_id)
                .order_by(requests.c.created_at)
            ).all()
        if row is None:
            return None
        data = dict(row)
        data["explain"] = json.loads(data["explain"] or "{}")
        found = [self.get(s[0]) for s in steps]
        return RunRecord(**data), [r for r in found if r is not None]

    def rows(self, since: float = 0.0) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(
                select(requests)
                .where(requests.c.created_at >= since)
                .order_by(requests.c.created_at)
            )
            return [dict(r) for r in result.mappings()]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(requests.c.id)).all())

    # -- profiles ------------------------------------------------------------

    def load_profiles(self) -> list[tuple[str, str, str, float, int]]:
        with self.engine.connect() as conn:
            result = conn.execute(
                select(
                    profiles.c.node,
                    profiles.c.model,
                    profiles.c.metric,
                    profiles.c.value,
                    profiles.c.samples,
                )
            )
            return [(r[0], r[1], r[2], float(r[3]), int(r[4])) for r in result]

    def save_profiles(self, entries: Sequence[tuple[str, str, str, float, int]]) -> None:
        """Insert or replace (node, model, metric) → (value, samples)."""
        now = time.time()
        with self._tx() as conn:
            for node, model, metric, value, samples in entries:
                conn.execute(
                    profiles.delete().where(
                        profiles.c.node == node,
                        profiles.c.model == model,
                        profiles.c.metric == metric,
                    )
                )
                conn.execute(
                    profiles.insert().values(
                        node=node,
                        model=model,
                        metric=metric,
                        value=value,
                        samples=samples,
                        updated_at=now,
                    )
                )


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin").
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the lock at BEGIN, so two budget checks never interleave;
        # readers begin deferred and, in WAL mode, never wait for writers.
        write = conn.get_execution_options().get("tierwise_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
