"""The ledger's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
    text,
)

metadata = MetaData()

#: One row per request, written before the response leaves the gateway.
requests = Table(
    "requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("day", String(10), nullable=False, index=True),
    Column("api_key", String(64), nullable=False),
    Column("task", String(32), nullable=False),
    Column("model", String(64), nullable=False),
    Column("plan", String(128), nullable=False),
    Column("tiers", String(64), nullable=False),
    Column("tokens_in", Integer, nullable=False, default=0),
    Column("tokens_out", Integer, nullable=False, default=0),
    Column("bytes_up", Integer, nullable=False, default=0),
    Column("bytes_down", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("predicted_latency_ms", Float, nullable=False, default=0.0),
    # Dollars are modelled (price tables × measured seconds, bytes and tokens), and so are
    # joules (stated watts × seconds, radio J/byte); RAPL's compute joules are measured.
    Column("usd_modelled", Float, nullable=False, default=0.0),
    Column("predicted_usd_modelled", Float, nullable=False, default=0.0),
    Column("cloud_usd_modelled", Float, nullable=False, default=0.0),
    Column("joules_modelled", Float, nullable=False, default=0.0),
    Column("joules_measured", Float, nullable=True),
    Column("predicted_joules_modelled", Float, nullable=False, default=0.0),
    Column("quality", Float, nullable=True),
    Column("status", String(16), nullable=False),
    Column("offline", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("error", Text, nullable=True),
    Column("explain", Text, nullable=False, default="{}"),
    #: the plain-language run this request was a step of (None: a request of its own);
    #: added after the first release, so older databases get it by ALTER TABLE at open
    Column("run_id", String(40), nullable=True, index=True),
)

#: One row per plain-language run: what was asked, the plan, the answer; its steps are
#: the ``requests`` rows with this ``run_id``.
runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("api_key", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("planner", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("usd_modelled", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("answer", Text, nullable=True),
    Column("explain", Text, nullable=False, default="{}"),
)

#: Spend per budget scope and period, in integer nano-dollars so that sums are exact.
#: ``reserved_nusd`` holds the upper bounds of attempts in flight, so concurrent
#: requests can never overspend.
budget_usage = Table(
    "budget_usage",
    metadata,
    Column("scope", String(80), nullable=False),
    Column("period", String(20), nullable=False),
    Column("limit_nusd", BigInteger, nullable=False),
    Column("spent_nusd", BigInteger, nullable=False, default=0),
    Column("reserved_nusd", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("scope", "period"),
)

#: One row per budget hold in flight: an attempt's upper-bound cost, held against every
#: scope in ``scopes`` (JSON [[scope, period], ...]) until its request is recorded. Each
#: ``budget_usage.reserved_nusd`` is the sum of these rows' ``amount_nusd`` for that scope,
#: so a hold can always be traced to a request and to the gateway (``owner``) running it.
#: ``used_nusd`` is the part already spent (by attempts that failed): it is charged when
#: the hold is released, the rest is given back. Added after the first release.
holds = Table(
    "holds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("request_id", String(40), nullable=False, index=True),
    Column("owner", String(128), nullable=False, index=True),
    Column("api_key", String(64), nullable=False),
    Column("task", String(32), nullable=False),
    Column("model", String(64), nullable=False),
    Column("created_at", Float, nullable=False),  # the request's, so its period is known
    Column("expires_at", Float, nullable=False),
    Column("amount_nusd", BigInteger, nullable=False),
    Column("used_nusd", BigInteger, nullable=False, default=0),
    Column("scopes", Text, nullable=False),
)

#: Measured profiles the planner reads: per node (or "*" for node-independent
#: measurements), model and metric.
profiles = Table(
    "profiles",
    metadata,
    Column("node", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("metric", String(96), nullable=False),
    Column("value", Float, nullable=False),
    Column("samples", Integer, nullable=False, default=1),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("node", "model", "metric"),
)


def create_or_upgrade(engine: Engine) -> None:
    """Create missing tables, and add the columns later releases gave existing ones.

    ``create_all`` makes new tables but never alters old ones; a database written before
    runs existed lacks ``requests.run_id``, and gets it here (nullable, so old rows stay
    valid). One written before holds had owners gets the ``holds`` table, and its
    untraceable reservations are released (:func:`_release_ownerless_reservations`)."""
    had_holds = inspect(engine).has_table("holds")
    fresh = not inspect(engine).has_table("budget_usage")
    metadata.create_all(engine)
    have = {c["name"] for c in inspect(engine).get_columns("requests")}
    if "run_id" not in have:
        # Plain SQL: an Index object made here would join the `requests` table's metadata
        # for good, and every later create_all in this process would make it twice.
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE requests ADD COLUMN run_id VARCHAR(40)"))
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_requests_run_id ON requests (run_id)"))
    _label_cost_columns(engine)
    if not had_holds and not fresh:
        _release_ownerless_reservations(engine)


def _release_ownerless_reservations(engine: Engine) -> None:
    """A ledger written before holds had owners: its ``reserved_nusd`` are the holds of
    requests that can no longer be traced (a gateway killed, a client gone), and nothing
    would ever give them back. Release them, and leave a ``released`` row per scope that
    says how much, so the upgrade is on the record."""
    import time
    import uuid

    now = time.time()
    with engine.begin() as conn:
        leaked = conn.execute(
            text("SELECT scope, period, reserved_nusd FROM budget_usage WHERE reserved_nusd != 0")
        ).all()
        for scope, period, nusd in leaked:
            conn.execute(
                requests.insert().values(
                    id=uuid.uuid4().hex,
                    created_at=now,
                    day=time.strftime("%Y-%m-%d", time.gmtime(now)),
                    api_key=scope.removeprefix("key:") if scope.startswith("key:") else "-",
                    task="-",
                    model="-",
                    plan="-",
                    tiers="",
                    status="released",
                    error=(
                        f"upgrade: ${nusd / 1e9:.9f} held on {scope} for {period} by requests "
                        "from before holds had owners was released (not charged)"
                    ),
                    explain="{}",
                )
            )
        conn.execute(text("UPDATE budget_usage SET reserved_nusd = 0"))


#: columns a release before the modelled/measured labels wrote, and their names now
_RENAMED = {
    "requests": {
        "usd": "usd_modelled",
        "predicted_usd": "predicted_usd_modelled",
        "cloud_usd": "cloud_usd_modelled",
        "joules": "joules_modelled",
        "predicted_joules": "predicted_joules_modelled",
    },
    "runs": {"usd": "usd_modelled"},
}


def _label_cost_columns(engine: Engine) -> None:
    """Rename an older database's cost columns (SQLite ≥ 3.25 and PostgreSQL rename in
    place, keeping the rows), and add ``joules_measured``."""
    for table, renames in _RENAMED.items():
        have = {c["name"] for c in inspect(engine).get_columns(table)}
        with engine.begin() as conn:
            for old, new in renames.items():
                if old in have and new not in have:
                    conn.execute(text(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}"))
    have = {c["name"] for c in inspect(engine).get_columns("requests")}
    if "joules_measured" not in have:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE requests ADD COLUMN joules_measured FLOAT"))
