"""The ledger: durable request records, atomic budgets and stored profiles.

SQLite (in WAL mode) by default, through SQLAlchemy so that PostgreSQL can follow.
Budgets are enforced with holds: before a paid attempt, its upper-bound cost is added
to ``reserved_nusd`` by one conditional UPDATE per budget scope, and written as one row
of ``holds`` (its request, its owner: the gateway process holding it, its expiry), all
in one transaction; the UPDATE only matches while ``spent + reserved + amount <= limit``.
An attempt that fails keeps only what it used on hold (:meth:`Ledger.keep_used`). When
the request ends, its record is written, its holds released, and the record's charge
added to ``spent`` in one transaction, so the budget and the ledger always say the same.
Holds whose owner died are released by the next gateway (:meth:`Ledger.reconcile`).
However many requests run at once, spent money can never pass a limit.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tierwise.errors import BudgetExceeded
from tierwise.ledger.schema import (
    budget_usage,
    create_or_upgrade,
    holds,
    profiles,
    requests,
    runs,
)

#: How long a hold outlives its attempt's timeout before any gateway may presume it
#: abandoned: longer than any answer streams, so only a hold whose request is truly
#: gone (a bug, or an owner on another host that died) ever reaches it.
HOLD_GRACE_S = 3600.0


@dataclass(frozen=True)
class BudgetScope:
    """One limit: ``scope`` is "global" or "key:NAME"; ``period`` "day:…" or "month:…"."""

    scope: str
    period: str
    limit_usd: float


@dataclass(frozen=True)
class HoldTag:
    """The request a hold is for, so that a hold its gateway left behind can be recorded."""

    request_id: str
    api_key: str
    task: str
    model: str
    created_at: float  # the request's: its budget periods follow from it


@dataclass(frozen=True)
class Reservation:
    amount: float
    scopes: tuple[BudgetScope, ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Released:
    """A request whose holds were released because their owner is gone."""

    request_id: str
    owner: str
    held_usd: float
    charged_usd: float  # the part failed attempts had used, charged and recorded


def new_owner() -> str:
    """This process's name on its holds: host, pid (so a gateway on the same host can
    tell the holder is gone) and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` ran on this host and its process is gone. An owner on another
    host cannot be seen from here: its holds wait for their expiry."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


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
    def __init__(self, url: str, owner: str | None = None) -> None:
        self.url = url
        self.owner = owner or new_owner()
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

    def reserve(
        self,
        scopes: Sequence[BudgetScope],
        amount: float,
        tag: HoldTag | None = None,
        ttl_s: float = 0.0,
    ) -> Reservation:
        """Hold ``amount`` USD against every scope, or none of them (raises BudgetExceeded).

        The hold is a ``holds`` row owned by this ledger's :attr:`owner`, expiring
        ``ttl_s`` + :data:`HOLD_GRACE_S` from now; ``tag`` names its request."""
        reservation = Reservation(amount, tuple(scopes))
        if amount <= 0 or not scopes:
            return reservation
        held, now = _reserve_nusd(amount), time.time()
        tag = tag or HoldTag(reservation.id, "-", "-", "-", now)
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
            conn.execute(
                holds.insert().values(
                    id=reservation.id,
                    request_id=tag.request_id,
                    owner=self.owner,
                    api_key=tag.api_key,
                    task=tag.task,
                    model=tag.model,
                    created_at=tag.created_at,
                    expires_at=now + ttl_s + HOLD_GRACE_S,
                    amount_nusd=held,
                    used_nusd=0,
                    scopes=json.dumps([[x.scope, x.period] for x in scopes]),
                )
            )
        return reservation

    def keep_used(self, reservation: Reservation, used_usd: float) -> None:
        """Shrink a hold to what its (failed) attempt used: that much stays held until
        the request's record charges it; the rest goes back to the budgets now."""
        with self._tx() as conn:
            row = conn.execute(
                select(holds.c.amount_nusd, holds.c.scopes).where(holds.c.id == reservation.id)
            ).first()
            if row is None:
                return
            used = min(int(row[0]), _nusd(used_usd))
            _add(conn, json.loads(row[1]), reserved=used - int(row[0]))
            conn.execute(
                update(holds)
                .where(holds.c.id == reservation.id)
                .values(amount_nusd=used, used_nusd=used)
            )

    def _release(self, conn: Connection, reservations: Sequence[Reservation]) -> None:
        """Give back what ``reservations`` still hold (one already released: nothing)."""
        for r in reservations:
            row = conn.execute(
                select(holds.c.amount_nusd, holds.c.scopes).where(holds.c.id == r.id)
            ).first()
            if row is not None:
                _add(conn, json.loads(row[1]), reserved=-int(row[0]))
                conn.execute(holds.delete().where(holds.c.id == r.id))

    def reconcile(self, now: float | None = None) -> list[Released]:
        """Release the holds no live request will ever settle: those whose owner is gone
        (a gateway on this host that was killed) and any past its expiry. What their
        failed attempts had used is charged; the rest goes back. Each request so released
        gets a record with status ``abandoned`` saying whose holds they were, and who
        released them, so the budget and the ledger still agree."""
        now = time.time() if now is None else now
        dead: dict[str, bool] = {}

        def gone(owner: str) -> bool:
            if owner not in dead:
                dead[owner] = owner != self.owner and owner_is_dead(owner)
            return dead[owner]

        with self._tx() as conn:
            rows = conn.execute(select(holds)).mappings().all()
            stale: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                if r["expires_at"] < now or gone(r["owner"]):
                    stale.setdefault(r["request_id"], []).append(dict(r))
            return [self._abandon(conn, group, now) for group in stale.values()]

    def _abandon(self, conn: Connection, group: list[dict[str, Any]], now: float) -> Released:
        used = sum(int(h["used_nusd"]) for h in group)
        held = sum(int(h["amount_nusd"]) for h in group)
        for h in group:
            _add(conn, json.loads(h["scopes"]), reserved=-int(h["amount_nusd"]))
            _add(conn, json.loads(h["scopes"]), spent=int(h["used_nusd"]))
            conn.execute(holds.delete().where(holds.c.id == h["id"]))
        first = group[0]
        why = "expired" if first["expires_at"] < now else "its gateway is no longer running"
        rec = RequestRecord(
            id=uuid.uuid4().hex,
            created_at=first["created_at"],
            api_key=first["api_key"],
            task=first["task"],
            model=first["model"],
            plan="-",
            tiers="",
            status="abandoned",
            usd_modelled=used / 1e9,
            attempts=len(group),
            error=(
                f"hold of ${held / 1e9:.9f} left by {first['owner']} ({why}) released by "
                f"{self.owner}; ${used / 1e9:.9f} of it used by failed attempts, charged"
            ),
            explain={"request_id": first["request_id"], "owner": first["owner"]},
        )
        row = asdict(rec)
        row["explain"] = json.dumps(rec.explain)
        row["day"] = rec.day
        conn.execute(requests.insert().values(**row))
        return Released(first["request_id"], first["owner"], held / 1e9, used / 1e9)

    def live_holds(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(holds)).mappings()]

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
        self,
        rec: RequestRecord,
        holds: Sequence[Reservation] = (),
        scopes: Sequence[BudgetScope] | None = None,
    ) -> None:
        """Write one request's record, release its holds, and charge its ``usd_modelled``
        to its budget ``scopes`` (default: the holds'), all in one transaction: the
        budget is charged exactly what the record says, or neither is written."""
        row = asdict(rec)
        row["explain"] = json.dumps(rec.explain, default=str)
        row["day"] = rec.day
        if scopes is None:
            scopes = list({s: None for r in holds for s in r.scopes})
        charge = _nusd(rec.usd_modelled)
        with self._tx() as conn:
            self._release(conn, holds)
            if charge:
                for s in scopes:
                    self._ensure_row(conn, s)
                _add(conn, [[s.scope, s.period] for s in scopes], spent=charge)
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


def _add(
    conn: Connection, scopes: Sequence[Sequence[str]], reserved: int = 0, spent: int = 0
) -> None:
    """Add nano-dollars to the reserved and spent columns of (scope, period) rows."""
    if not reserved and not spent:
        return
    c = budget_usage.c
    for scope, period in scopes:
        conn.execute(
            update(budget_usage)
            .where(c.scope == scope, c.period == period)
            .values(reserved_nusd=c.reserved_nusd + reserved, spent_nusd=c.spent_nusd + spent)
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
