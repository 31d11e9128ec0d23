"""Providers and the network client: Electricity Maps and Energi Data Service shapes, the client's limits."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from carbonwrap.grid import http, live_intensity, live_zone, table_region
from carbonwrap.grid.http import FetchError
from carbonwrap.grid.providers import parse_electricitymaps, parse_energinet
from carbonwrap.grid.series import floor_to
from tests.conftest import cw
from tests.replay import Replay, fixture, replay, shift_em, wall

assert replay and cw
TOKEN = "s3cr3t-token-value"


def em_env(server: Replay, tmp_path: Any, token: str | None = TOKEN) -> dict[str, str]:
    e = {"CARBONWRAP_ELECTRICITYMAPS_URL": server.url, "XDG_CACHE_HOME": str(tmp_path)}
    if token is not None:
        e["ELECTRICITYMAPS_TOKEN"] = token
    return e


def test_electricitymaps_history_stamps_start_of_hour(replay: Replay, tmp_path: Any) -> None:
    doc = fixture("electricitymaps/aioelectricitymaps__carbon_intensity_history.json")
    hour = floor_to(time.time(), 3600)
    by = hour - wall(doc["history"][-1]["datetime"])  # the last recorded hour becomes the current one
    shifted = shift_em(doc, by)
    replay.routes["/v3/carbon-intensity/history"] = (200, json.dumps(shifted).encode())
    ivs = [(hour - 1800.0, hour + 1800.0, 7200.0)]  # half in the previous hour, half in this one
    fields, grams, warnings = live_intensity("DE", ivs, 380.0, env=em_env(replay, tmp_path), now=lambda: hour + 1800)
    assert warnings == []
    last, prev = doc["history"][-1], doc["history"][-2]
    assert [p["g_per_kwh"] for p in fields["periods"]] == [prev["carbonIntensity"], last["carbonIntensity"]]
    assert fields["periods"][1]["from"].endswith(":00:00Z") and fields["periods"][1]["from"] == shifted["history"][-1][
        "datetime"
    ].replace(".000Z", "Z")
    assert abs(grams - (3600 * prev["carbonIntensity"] + 3600 * last["carbonIntensity"]) / 3.6e6) < 1e-9
    kinds = {p["kind"] for p in fields["periods"]}
    assert kinds <= {"actual", "forecast"}
    assert fields["basis"] == "average, lifecycle" and fields["provider"] == "Electricity Maps"
    ((_, headers),) = replay.requests
    assert {k.lower(): v for k, v in headers.items()}["auth-token"] == TOKEN
    assert TOKEN not in json.dumps(fields)


def test_electricitymaps_floats_and_estimated_is_not_actual() -> None:
    doc = fixture("electricitymaps/zeus__history_US-MIDW-MISO_2024-11-30.json")
    periods = parse_electricitymaps(doc)
    assert len(periods) == len(doc["history"])
    for p, row in zip(periods, doc["history"], strict=True):
        assert p.kind == ("actual" if row["isEstimated"] is False else "forecast")
        assert p.end_s - p.start_s == 3600
    one = parse_electricitymaps({"carbonIntensity": 58.765447504659946, "datetime": "2025-11-21T10:00:00.000Z"})
    assert one[0].g_per_kwh == 58.765447504659946


def test_electricitymaps_forecast_and_legacy_shape() -> None:
    doc = fixture("electricitymaps/green-elephpant__forecast_DE_2023-05-02.json")
    periods = parse_electricitymaps(doc, forecast=True)
    assert len(periods) == 48 and all(p.kind == "forecast" for p in periods)
    with pytest.raises(FetchError, match="not a v3"):
        parse_electricitymaps(fixture("electricitymaps/aioelectricitymaps__response.json"))


def test_electricitymaps_no_token_and_401(replay: Replay, tmp_path: Any) -> None:
    ivs = [(time.time() - 60, time.time(), 60.0)]
    _, _, warnings = live_intensity("DE", ivs, 380.0, env=em_env(replay, tmp_path, token=None))
    assert len(warnings) == 1 and "ELECTRICITYMAPS_TOKEN" in warnings[0] and replay.requests == []
    replay.routes["/v3/"] = (401, b'{"message": "unauthorized"}')
    _, _, warnings = live_intensity("em:DE", ivs, 380.0, env=em_env(replay, tmp_path))
    assert len(warnings) == 1 and "refused the token (HTTP 401)" in warnings[0]
    assert TOKEN not in warnings[0]


def test_energinet_dk_is_mean_of_areas(replay: Replay, tmp_path: Any) -> None:
    # No recorded answer exists (energidataservice-NOTES.md); this body has the documented record shape.
    t0 = floor_to(time.time(), 300)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0))
    body = {
        "total": 2,
        "dataset": "CO2Emis",
        "records": [
            {"Minutes5UTC": stamp, "Minutes5DK": stamp, "PriceArea": "DK1", "CO2Emission": 68.000000},
            {"Minutes5UTC": stamp, "Minutes5DK": stamp, "PriceArea": "DK2", "CO2Emission": 94.000000},
        ],
    }
    replay.routes["/dataset/CO2Emis"] = (200, json.dumps(body).encode())
    e = {"CARBONWRAP_ENERGINET_URL": replay.url, "XDG_CACHE_HOME": str(tmp_path)}
    fields, _, warnings = live_intensity("DK", [(t0, t0 + 300, 300.0)], 150.0, env=e, now=lambda: t0 + 300)
    assert warnings == [] and fields["g_per_kwh"] == 81.0 and "mean of DK1 and DK2" in fields["note"]
    assert "PriceArea" in replay.paths()[0] and "CO2Emis?" in replay.paths()[0]
    assert parse_energinet(body, ("DK1",))[0].g_per_kwh == 68.0
    assert parse_energinet({"records": body["records"][:1]}, ("DK1", "DK2")) == []  # one area alone is a hole


def test_zones() -> None:
    assert live_zone("uk") == live_zone("GB") and live_zone("GB").provider == "neso"  # type: ignore[union-attr]
    assert live_zone("GB-13").zone == "GB-13" and live_zone("gb-rg10").zone == "GB-RG10"  # type: ignore[union-attr]
    assert live_zone("GB-18") is None and live_zone("GB-!!") is None
    assert live_zone("DK-DK1").provider == "energinet"  # type: ignore[union-attr]
    assert live_zone("em:US-CAL-CISO").zone == "US-CAL-CISO"  # type: ignore[union-attr]
    assert live_zone("FR").zone == "FR" and live_zone("FRA").zone == "FR"  # type: ignore[union-attr]
    assert live_zone("aws:eu-west-3").zone == "FR"  # type: ignore[union-attr]
    assert live_zone("aws:us-west-2").zone == "US-NW-BPAT"  # type: ignore[union-attr]
    assert live_zone("aws:eu-west-2").provider == "neso"  # type: ignore[union-attr]
    assert table_region("GB-13") == "GB" and table_region("DK-DK2") == "DK" and table_region("em:FR") == "FR"


def test_client_size_cap_and_status(replay: Replay) -> None:
    replay.routes["/big"] = (200, b"x" * (http.MAX_BYTES + 1))
    with pytest.raises(FetchError, match="larger than 1024 KiB"):
        http.get(replay.url + "/big")
    replay.routes["/gone"] = (404, b"{}")
    with pytest.raises(FetchError, match="HTTP 404") as e:
        http.get(replay.url + "/gone?token=" + TOKEN)
    assert e.value.status == 404 and TOKEN not in str(e.value)


def test_client_trickle_hits_deadline_and_cancel_cuts_hang(replay: Replay) -> None:
    replay.routes["/slow"] = "trickle"
    with pytest.raises(FetchError, match="within 1 s"):
        http.get(replay.url + "/slow", deadline_s=1.0)
    replay.routes["/hang"] = "hang"
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    began = time.monotonic()
    with pytest.raises(FetchError, match="cancelled"):
        http.get(replay.url + "/hang", deadline_s=60.0, cancel=cancel)
    assert time.monotonic() - began < 30  # far below the 60 s deadline: the cancel ended it


def test_client_dns_failure() -> None:
    with pytest.raises(FetchError) as e:
        http.get("http://no-such-host.invalid/x", deadline_s=5.0)
    assert "resolve" in str(e.value) or "within 5 s" in str(e.value)


def test_probe_for_doctor(replay: Replay) -> None:
    from carbonwrap.grid import probe
    from tests.replay import NESO_24H, NESO_24H_ASKED, NesoSeries, shift_neso

    t0 = floor_to(time.time())
    replay.routes["/intensity/"] = NesoSeries(shift_neso(fixture(NESO_24H)["data"], t0 - wall(NESO_24H_ASKED))).answer
    got = probe("GB", env={"CARBONWRAP_NESO_URL": replay.url}, now=lambda: t0 + 60)
    assert got["ok"] and got["provider"] == "NESO" and got["g_per_kwh"] == 177 and got["kind"] == "forecast"
    assert got["latency_s"] is not None and len(replay.requests) == 1
    replay.routes["/intensity/"] = (500, b"")
    bad = probe("GB", env={"CARBONWRAP_NESO_URL": replay.url}, now=lambda: t0 + 60)
    assert not bad["ok"] and "HTTP 500" in bad["error"]


def test_regions_marks_live_providers(cw: Any) -> None:
    lines = cw("regions").stdout.decode().splitlines()
    marks = {line.split()[0]: line.rsplit("[", 1)[-1] for line in lines[1:]}
    assert marks["GB"] == "live: NESO]" and marks["DK"] == "live: Energi Data Service]"
    assert marks["FR"] == "live: Electricity Maps (token)]"
    assert not marks["US-eGRID-CAMX"].startswith("live")
