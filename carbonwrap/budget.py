"""Carbon and energy budgets: amounts with units, and the check made at every sample. Pure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from carbonwrap.model import J_PER_KWH

# A number, then a unit. The unit is case-sensitive (SPEC.md section 1): mWh is milliwatt-hours, MWh
# megawatt-hours. µ may be typed as the micro sign (U+00B5), the Greek mu (U+03BC) or 'u'.
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z\u00b5\u03bc]+)\s*$")
MASS_G = {"µg": 1e-6, "\u03bcg": 1e-6, "ug": 1e-6, "mg": 1e-3, "g": 1.0, "kg": 1e3, "t": 1e6}
ENERGY_J = {
    "mJ": 1e-3,
    "J": 1.0,
    "kJ": 1e3,
    "MJ": 1e6,
    "mWh": 3.6,
    "Wh": 3600.0,
    "kWh": J_PER_KWH,
    "MWh": 1e3 * J_PER_KWH,
}
EXIT_BUDGET = 3  # --on-budget fail, when the command itself succeeded (SPEC.md section 2)


def parse_amount(text: str, units: dict[str, float]) -> float:
    """'1.5kg' -> 1500.0 with MASS_G; raises ValueError with a message that shows the accepted form."""
    mass = units is MASS_G
    shown, example = ("µg (or ug), mg, g, kg, t", "250g") if mass else ("mJ, J, kJ, MJ, mWh, Wh, kWh, MWh", "1.5kWh")
    m = _AMOUNT.match(text)
    if not m:
        raise ValueError(f"needs a number and a unit ({shown}), got '{text}'; e.g. {example}")
    number, unit = m.groups()
    if unit not in units:
        same = [u for u in units if u.lower() == unit.lower() and u != "\u03bcg"]
        hint = f"; units are case-sensitive: did you mean {' or '.join(same)}?" if same else f"; e.g. {example}"
        raise ValueError(f"unknown unit '{unit}' in '{text}' (use {shown}){hint}")
    value = float(number) * units[unit]
    if not math.isfinite(value):
        raise ValueError(f"'{text}' is too large to be a budget; e.g. {example}")
    return value


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

    def exit_status(self, exceeded: str | None, command_exit: int) -> int:
        """carbonwrap's exit status as the budget decides it: 3 for --on-budget fail past a budget when the
        command succeeded, else the command's own (a record that cannot be written may still make it 1)."""
        if exceeded is not None and self.on_budget == "fail" and command_exit == 0:
            return EXIT_BUDGET
        return command_exit

    def outcome(self, exceeded: str | None, command_exit: int) -> dict[str, object]:
        """The record's `budget` (SPEC.md section 5.1): limits, policy, what happened, the exit status."""
        return {
            "max_co2e_g": self.max_co2e_g,
            "max_energy_j": self.max_energy_j,
            "on_budget": self.on_budget,
            "exceeded": exceeded,
            "exit_status": self.exit_status(exceeded, command_exit),
        }
