"""Carbon and energy budgets: amounts with units, and the check made at every sample. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]+)\s*$")
MASS_G = {"mg": 1e-3, "g": 1.0, "kg": 1e3, "t": 1e6}
ENERGY_J = {"j": 1.0, "kj": 1e3, "wh": 3600.0, "kwh": 3.6e6, "mwh": 3.6e9}


def parse_amount(text: str, units: dict[str, float]) -> float:
    """'1.5kg' -> 1500.0 with MASS_G; raises ValueError with a message that shows the accepted form."""
    m = _AMOUNT.match(text)
    if not m or m.group(2).lower() not in units:
        shown, example = ("mg, g, kg, t", "250g") if units is MASS_G else ("J, kJ, Wh, kWh, MWh", "1.5kWh")
        raise ValueError(f"needs a number and a unit ({shown}), got '{text}'; e.g. {example}")
    return float(m.group(1)) * units[m.group(2).lower()]


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on the charged energy (before PUE, as in the record) and on CO2e; what to do past them."""

    max_co2e_g: float | None = None
    max_energy_j: float | None = None
    on_budget: str = "warn"  # "warn" | "fail" | "kill"

    @property
    def active(self) -> bool:
        return self.max_co2e_g is not None or self.max_energy_j is not None

    def exceeded(self, energy_j: float, co2e_g: float) -> str | None:
        """A sentence saying which limit was passed, or None."""
        if self.max_energy_j is not None and energy_j > self.max_energy_j:
            return f"energy budget passed: {energy_j:.4g} J charged, limit {self.max_energy_j:.4g} J"
        if self.max_co2e_g is not None and co2e_g > self.max_co2e_g:
            return f"carbon budget passed: {co2e_g:.4g} g CO2e, limit {self.max_co2e_g:.4g} g"
        return None
