"""Text that is safe to store and to show: valid UTF-8, finite numbers, no raw control characters. Pure."""

from __future__ import annotations

import math
import re
from typing import Any

# C0 and C1 controls, DEL, and the Unicode bidirectional overrides that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def clean_text(text: str) -> str:
    """`text` as valid UTF-8: bytes that were not UTF-8 (surrogateescape) become `\\xNN`, as backslashreplace
    writes them; a lone surrogate from elsewhere becomes `\\udNNN`."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def escape_control(text: str) -> str:
    """`text` with every control character shown as an escape (`\\r`, `\\x1b`, `\\u202e`), never sent raw."""
    text = clean_text(text)
    if not _CONTROL.search(text):
        return text

    def one(m: re.Match[str]) -> str:
        c = m.group()
        if c in _NAMED:
            return _NAMED[c]
        return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"

    return _CONTROL.sub(one, text)


def sanitise(value: Any) -> Any:
    """A copy of a JSON-like value that `json.dumps(..., allow_nan=False)` always accepts and writes as valid
    UTF-8: a non-finite float becomes None, every string (keys included) goes through clean_text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(str(k)): sanitise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitise(v) for v in value]
    return clean_text(str(value))


def format_mass(g: float) -> str:
    """Grams in the unit that reads best, 3 significant figures: 12.3 kg, 450 mg."""
    for unit, scale in (("t", 1e6), ("kg", 1e3), ("g", 1.0), ("mg", 1e-3)):
        if abs(g) >= scale:
            return f"{g / scale:.3g} {unit}"
    return f"{g / 1e-6:.3g} µg" if g else "0 g"


def format_energy(j: float, short: bool = False) -> str:
    """Joules as kWh, Wh, kJ (with its Wh) or J; `short` for the live panel's narrow line: Wh or J only."""
    wh = j / 3600
    if short:
        return f"{wh:.3g} Wh" if j >= 3600 else f"{j:.3g} J"
    if wh >= 1000:
        return f"{wh / 1000:.3g} kWh"
    if wh >= 1:
        return f"{wh:.3g} Wh"
    if j >= 1000:
        return f"{j / 1000:.3g} kJ ({wh:.3g} Wh)"
    return f"{j:.3g} J"
