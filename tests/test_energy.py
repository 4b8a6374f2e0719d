"""Energy: the model (watts × time, radio J/byte) and RAPL counters read from powercap."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierwise.config import default_spec
from tierwise.ledger.energy import RaplMeter, radio_joules
from tierwise.placement.costing import Measured, plan_cost
from tierwise.placement.plans import vision_plans


def _zone(root: Path, name: str, label: str, energy: int, max_range: int = 1_000_000) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_reads_packages_and_survives_wrap_around(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 999_000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)  # a sub-zone: counted inside its package
    _zone(tmp_path, "intel-rapl:1", "package-1", 100)
    meter = RaplMeter(tmp_path)
    assert meter.available and len(meter.zones) == 2
    start = meter.read_uj()
    (package / "energy_uj").write_text("2000\n")  # wrapped past 1,000,000 µJ
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("500100\n")
    assert meter.joules_since(start) == pytest.approx((1_000 + 2_000 + 500_000) / 1e6)


def test_no_powercap_means_no_rapl(tmp_path: Path) -> None:
    assert not RaplMeter(tmp_path / "absent").available


def test_radio_energy_by_medium() -> None:
    energy = default_spec().energy
    assert radio_joules(energy, "wifi", 1e6, 0) == pytest.approx(2.27)
    assert radio_joules(energy, "ethernet", 1e6, 1e6) == 0.0


def test_measured_energy_stays_beside_the_model() -> None:
    spec = default_spec()
    plan = next(
        p for p in vision_plans(spec, "efficientnet-lite0", 6, "device") if p.id == "edge/jpeg90"
    )
    modelled = Measured(0.1, 20_000, 4_000, 0.0, 0.05)
    _, model_joules = plan_cost(spec, plan, modelled)
    assert model_joules == pytest.approx(
        450 * 0.05 + radio_joules(spec.energy, "wifi", 20_000, 4_000)
    )
    # RAPL's joules are reported as measured, beside the model, never mixed into it
    measured = Measured(0.1, 20_000, 4_000, 0.0, 0.05, measured_compute_joules=3.0)
    assert plan_cost(spec, plan, measured)[1] == pytest.approx(model_joules)
