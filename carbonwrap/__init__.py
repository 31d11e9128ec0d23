"""carbonwrap: measure the energy and carbon footprint of any command."""

__version__ = "0.1.0"
