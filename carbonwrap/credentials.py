"""Which variables carry credentials, so that the command never inherits them (SPEC.md section 2).

Standard library only and no urllib: this runs before the launch."""

from __future__ import annotations

from collections.abc import Mapping

AUTH_VAR = "CARBONWRAP_PUSHGATEWAY_AUTH"
URL_VAR = "CARBONWRAP_PUSHGATEWAY"
TOKEN_VARS = ("ELECTRICITYMAPS_TOKEN",)  # SPEC.md section 8


def has_credentials(url: str) -> bool:
    """Whether a URL may carry a user or password: any '@' after the scheme (a password may hold '/')."""
    return "@" in url.split("://", 1)[-1]


def credential_env_names(environ: Mapping[str, str]) -> set[str]:
    """The variables the command must not inherit (SPEC.md section 2): the Pushgateway's credentials, its URL
    when that carries them, and the tokens of section 8."""
    names = {name for name in (AUTH_VAR, *TOKEN_VARS) if name in environ}
    if URL_VAR in environ and has_credentials(environ[URL_VAR]):
        names.add(URL_VAR)
    return names
