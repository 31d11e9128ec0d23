"""carbonwrap: measure the energy and carbon footprint of any command."""

from __future__ import annotations

__version__ = "0.1.0"

from carbonwrap.marks import mark  # standard library only, light to import

__all__ = ["__version__", "mark"]
