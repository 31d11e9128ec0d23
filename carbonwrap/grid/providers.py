"""The three providers of SPEC.md section 8: their URLs, and their answers parsed into Periods.

Each `fetch` asks for the periods around [start_s, end_s] and returns what the provider gave, sorted and
cleaned; it raises FetchError with one line for the user when there is no usable answer. No third-party
imports; the network goes through grid.http only.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from carbonwrap.grid import http
from carbonwrap.grid.http import FetchError
from carbonwrap.grid.series import HALF_HOUR_S, Period, Zone, ceil_to, clean, floor_to, parse_time

BASES = {
    "neso": ("CARBONWRAP_NESO_URL", "https://api.carbonintensity.org.uk"),
    "energinet": ("CARBONWRAP_ENERGINET_URL", "https://api.energidataservice.dk"),
    "electricitymaps": ("CARBONWRAP_ELECTRICITYMAPS_URL", "https://api.electricitymaps.com"),
}
TOKEN_VAR = "ELECTRICITYMAPS_TOKEN"
Getter = Callable[..., bytes]


class Request:
    """What a fetch needs besides the zone: the environment, an overall deadline, a cancel, the client."""

    def __init__(
        self,
        env: Mapping[str, str],
        deadline_s: float,
        cancel: threading.Event | None = None,
        get: Getter = http.get,
    ) -> None:
        self.env = env
        self.deadline_s = deadline_s
        self.end = time.monotonic() + deadline_s
        self.cancel = cancel
        self._get = get
        self.count = 0  # requests made, for the cache tests and the closing figures

    def base(self, provider: str) -> str:
        var, default = BASES[provider]
        return (self.env.get(var) or default).rstrip("/")

    def json(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchError(f"the {self.deadline_s:g} s deadline for live figures has passed")
        self.count += 1
        try:
            body = self._get(url, headers=headers or {}, deadline_s=left, cancel=self.cancel)
        except FetchError as e:
            if e.timeout:  # say the overall deadline, not what was left of it for this request
                raise FetchError(f"no complete answer from {http.host(url)} within {self.deadline_s:g} s") from None
            raise
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise FetchError(f"the answer from {http.host(url)} is not JSON") from None


def _neso_time(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _neso_path(zone: str, span: str) -> str:
    if zone == "GB":
        return f"/intensity/{span}"
    rest = zone[3:]
    kind = "regionid" if rest.isdigit() else "postcode"
    return f"/regional/intensity/{span}/{kind}/{quote(rest)}"


def _neso_rows(doc: Any) -> list[Any]:
    data = doc.get("data") if isinstance(doc, dict) else None
    # National answers put a list under "data"; regional ones an object (regionid, shortname, ...) whose own
    # "data" is the list. Some regional forms wrap that object in a one-item list.
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and "regionid" in data[0]:
        data = data[0]
    if isinstance(data, dict):
        data = data.get("data")
    if not isinstance(data, list):
        raise FetchError("NESO's answer has no 'data' list (not a Carbon Intensity API answer)")
    return data


def parse_neso(doc: Any) -> list[Period]:
    """Periods from a national or regional NESO answer: `actual` where published, else `forecast`."""
    out = []
    for row in _neso_rows(doc):
        try:
            values = row["intensity"]
            actual = values.get("actual")
            value, kind = (actual, "actual") if isinstance(actual, int | float) else (values["forecast"], "forecast")
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            out.append(Period(parse_time(row["from"]), parse_time(row["to"]), float(value), kind))
        except (KeyError, TypeError, AttributeError, ValueError):
            continue
    return clean(out)


def neso(zone: Zone, start_s: float, end_s: float, req: Request, *, forecast: bool = False) -> list[Period]:
    # The API returns the periods whose *end* lies in [from, to] (see the fixtures' NOTES.md): a range inside
    # one half-hour returns nothing, so the range is padded out to the half-hours around the run.
    lo = floor_to(start_s)
    if forecast:
        span = f"{_neso_time(lo)}/fw48h"
    else:
        hi = max(ceil_to(end_s), lo + HALF_HOUR_S)
        span = f"{_neso_time(lo)}/{_neso_time(hi)}"
    return parse_neso(req.json(req.base("neso") + _neso_path(zone.zone, span)))


def parse_energinet(doc: Any, areas: tuple[str, ...]) -> list[Period]:
    """5-minute periods from an Energi Data Service CO2Emis/CO2EmisProg answer; several areas: their mean."""
    rows = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise FetchError("Energi Data Service's answer has no 'records' list")
    by_time: dict[float, dict[str, float]] = {}
    for row in rows:
        try:
            value = row["CO2Emission"]
            if isinstance(value, int | float) and not isinstance(value, bool) and row["PriceArea"] in areas:
                by_time.setdefault(parse_time(row["Minutes5UTC"]), {})[row["PriceArea"]] = float(value)
        except (KeyError, TypeError, ValueError):
            continue
    # A period where one of the areas is missing is a hole, not the other area's figure.
    both = [Period(t, t + 300.0, sum(v.values()) / len(v), "") for t, v in by_time.items() if len(v) == len(areas)]
    return clean(both)


def energinet(zone: Zone, start_s: float, end_s: float, req: Request, *, forecast: bool = False) -> list[Period]:
    areas = ("DK1", "DK2") if zone.zone == "DK" else (zone.zone[3:],)
    # start/end are read in Danish local time (see energidataservice-NOTES.md): pad by 2 h either side and
    # keep the rows by their own Minutes5UTC stamp.
    lo, hi = floor_to(start_s, 300.0) - 7200, ceil_to(end_s, 300.0) + 7200
    fmt = "%Y-%m-%dT%H:%M"
    query = {
        "start": datetime.fromtimestamp(lo, UTC).strftime(fmt),
        "end": datetime.fromtimestamp(hi, UTC).strftime(fmt),
        "filter": json.dumps({"PriceArea": list(areas)}, separators=(",", ":")),
        "sort": "Minutes5UTC ASC",
        "limit": str(len(areas) * math.ceil((hi - lo) / 300.0) + 10),
    }
    dataset = "CO2EmisProg" if forecast else "CO2Emis"
    doc = req.json(f"{req.base('energinet')}/dataset/{dataset}?{urlencode(query, quote_via=quote)}")
    kind = "forecast" if forecast else "actual"
    return [Period(p.start_s, p.end_s, p.g_per_kwh, kind) for p in parse_energinet(doc, areas)]


def parse_electricitymaps(doc: Any, *, forecast: bool = False) -> list[Period]:
    """Hourly periods from a v3 history, latest or forecast answer; each stamp is the start of its hour."""
    if not isinstance(doc, dict):
        raise FetchError("Electricity Maps' answer is not a v3 carbon-intensity object")
    if isinstance(doc.get("history"), list):
        rows = doc["history"]
    elif isinstance(doc.get("forecast"), list):
        rows = doc["forecast"]
    elif "carbonIntensity" in doc and "datetime" in doc:
        rows = [doc]
    else:  # the legacy CO2 Signal v1 shape ({status, countryCode, data}) lands here too
        raise FetchError("Electricity Maps' answer is not a v3 carbon-intensity body")
    out = []
    for row in rows:
        try:
            value = row["carbonIntensity"]
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            start = parse_time(row["datetime"])
            # An estimated figure is not a measurement: it counts as forecast, never as actual.
            kind = "forecast" if forecast or row.get("isEstimated") is not False else "actual"
            out.append(Period(start, start + 3600.0, float(value), kind))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return clean(out)


def electricitymaps(zone: Zone, start_s: float, end_s: float, req: Request, *, forecast: bool = False) -> list[Period]:
    token = req.env.get(TOKEN_VAR, "").strip()
    if not token:
        raise FetchError(f"Electricity Maps needs an API token: set {TOKEN_VAR}")
    base = f"{req.base('electricitymaps')}/v3/carbon-intensity"
    headers = {"auth-token": token}
    q = urlencode({"zone": zone.zone})
    try:
        if forecast:
            return parse_electricitymaps(req.json(f"{base}/forecast?{q}", headers), forecast=True)
        periods = parse_electricitymaps(req.json(f"{base}/history?{q}", headers))
        if not periods or periods[-1].end_s < end_s:  # the hour now running may not be in the history yet
            periods = clean(periods + parse_electricitymaps(req.json(f"{base}/latest?{q}", headers)))
        return periods
    except FetchError as e:
        if e.status == 401 or e.status == 403:
            raise FetchError(f"Electricity Maps refused the token (HTTP {e.status}): check {TOKEN_VAR}") from None
        raise


FETCHERS: dict[str, Callable[..., list[Period]]] = {
    "neso": neso,
    "energinet": energinet,
    "electricitymaps": electricitymaps,
}
