"""Reports over the ledger: spend and use by tier, model and day, against all-cloud.

Every dollar and joule here is modelled (see :mod:`tierwise.ledger.prices` and
:mod:`tierwise.ledger.energy`). ``cloud_usd_modelled`` on each record is what the same
request was predicted to cost on the cheapest all-cloud plan at the moment it was
placed; the savings are the difference.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Group:
    requests: int = 0
    served: int = 0
    usd: float = 0.0
    cloud_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    joules: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        self.requests += 1
        if row["status"] != "ok":
            return
        self.served += 1
        self.usd += row["usd_modelled"]
        self.cloud_usd += row["cloud_usd_modelled"]
        self.tokens_in += row["tokens_in"]
        self.tokens_out += row["tokens_out"]
        self.bytes_up += row["bytes_up"]
        self.bytes_down += row["bytes_down"]
        self.joules += row["joules_modelled"]
        self.latencies.append(row["latency_ms"])

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0

    @property
    def savings(self) -> float:
        return self.cloud_usd - self.usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "usd_modelled": self.usd,
            "all_cloud_usd_modelled": self.cloud_usd,
            "savings_usd_modelled": self.savings,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "joules_modelled": self.joules,
            "p50_latency_ms": self.p50_ms,
        }


@dataclass
class Report:
    total: Group
    by_tier: dict[str, Group]
    by_model: dict[str, Group]
    by_day: dict[str, Group]
    by_status: dict[str, int]


def build_report(rows: list[dict[str, Any]]) -> Report:
    total = Group()
    groups: dict[str, dict[str, Group]] = {k: defaultdict(Group) for k in ("tier", "model", "day")}
    status: dict[str, int] = defaultdict(int)
    for row in rows:
        total.add(row)
        status[row["status"]] += 1
        tier = row["tiers"].split(",")[-1] if row["tiers"] else "-"
        groups["tier"][tier].add(row)
        groups["model"][row["model"]].add(row)
        groups["day"][row["day"]].add(row)
    return Report(
        total, dict(groups["tier"]), dict(groups["model"]), dict(groups["day"]), dict(status)
    )


def report_json(report: Report) -> dict[str, Any]:
    return {
        "total": report.total.as_dict(),
        "by_tier": {k: g.as_dict() for k, g in sorted(report.by_tier.items())},
        "by_model": {k: g.as_dict() for k, g in sorted(report.by_model.items())},
        "by_day": {k: g.as_dict() for k, g in sorted(report.by_day.items())},
        "by_status": report.by_status,
    }
