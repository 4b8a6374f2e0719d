"""Joules: node power × compute time, plus the device radio's energy per byte.

Where the machine exposes Intel RAPL counters (``/sys/class/powercap/intel-rapl:*``),
:class:`RaplMeter` measures the CPU package energy of a piece of compute instead. RAPL
counts the whole package, every process on it; the reading is labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tierwise.config import EnergySpec, Medium, NodeSpec

POWERCAP = Path("/sys/class/powercap")


def compute_joules(node: NodeSpec, seconds: float) -> float:
    return node.power.active_watts * max(0.0, seconds)


def radio_joules(energy: EnergySpec, medium: Medium, bytes_up: float, bytes_down: float) -> float:
    radio = energy.radio[medium]
    return radio.joules_per_byte_up * bytes_up + radio.joules_per_byte_down * bytes_down


@dataclass(frozen=True)
class _Zone:
    energy_file: Path
    max_uj: int


class RaplMeter:
    """Reads the package energy counters; ``available`` is False where there are none."""

    def __init__(self, root: Path = POWERCAP) -> None:
        self.zones: list[_Zone] = []
        for zone in sorted(root.glob("intel-rapl:*")):
            name = (zone / "name").read_text().strip() if (zone / "name").exists() else ""
            if ":" in zone.name.removeprefix("intel-rapl:") or not name.startswith("package"):
                continue  # sub-zones (core, uncore, dram) are inside their package
            try:
                max_uj = int((zone / "max_energy_range_uj").read_text())
                int((zone / "energy_uj").read_text())
            except (OSError, ValueError):
                continue  # unreadable (often root-only): treat as absent
            self.zones.append(_Zone(zone / "energy_uj", max_uj))

    @property
    def available(self) -> bool:
        return bool(self.zones)

    def read_uj(self) -> list[int]:
        return [int(z.energy_file.read_text()) for z in self.zones]

    def joules_since(self, start: list[int]) -> float:
        """Energy since ``start`` (from :meth:`read_uj`), allowing for counter wrap-around."""
        total = 0
        for zone, before, after in zip(self.zones, start, self.read_uj(), strict=True):
            total += after - before if after >= before else zone.max_uj - before + after
        return total / 1e6
