"""The money invariant, checked the way an operator checks it: ``tierwise ledger check``.

Every fault scenario ends with :func:`assert_ledger_balances`: whatever failed, timed out
or was cut, each budget's usage must be exactly its records' charges plus its live holds.
"""

from __future__ import annotations

import time

from typer.testing import CliRunner

from tierwise.cli import app
from tierwise.ledger.store import Ledger

runner = CliRunner(env={"COLUMNS": "200"})


def assert_ledger_balances(ledger_url: str) -> str:
    """Run ``tierwise ledger check`` on the ledger; it must exit 0. Returns its table."""
    result = runner.invoke(app, ["ledger", "check", "--ledger", ledger_url])
    assert result.exit_code == 0, result.output
    assert "balance" in result.output
    return result.output


def wait_for_no_holds(ledger_url: str, seconds: float = 30.0) -> None:
    """Holds go when their requests are recorded, which for a stream its client cut can
    be a moment after the client left."""
    ledger = Ledger(ledger_url)
    try:
        deadline = time.monotonic() + seconds
        while (left := ledger.live_holds()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], left
    finally:
        ledger.close()
