"""Live pricing (SPEC.md section 8) against the replay server serving the real recorded NESO answers."""

from __future__ import annotations

import threading
import time
from typing import Any

from carbonwrap.grid import describe, live_intensity
from carbonwrap.grid.series import floor_to
from tests.replay import NESO_24H, NESO_24H_ASKED, NesoSeries, Replay, fixture, neso_time, replay, shift_neso, wall

assert replay  # the fixture, imported for pytest
TABLE = 213.0


def neso(server: Replay, t0: float, name: str = NESO_24H, asked: str = NESO_24H_ASKED) -> list[dict[str, Any]]:
    """Serve the recording shifted so that its request time lands on the half hour t0; the rows served."""
    rows = shift_neso(fixture(name)["data"], t0 - wall(asked))
    server.routes["/intensity/"] = NesoSeries(rows).answer
    return rows


def env(server: Replay, tmp_path: Any, **extra: str) -> dict[str, str]:
    return {"CARBONWRAP_NESO_URL": server.url, "XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}


def profile(start: float, minutes: int = 40) -> list[tuple[float, float, float]]:
    """One interval a second: 20 W for the first 25 minutes, 60 W after (a loop that speeds up)."""
    return [(start + i, start + i + 1, 20.0 if i < 25 * 60 else 60.0) for i in range(minutes * 60)]


def by_seconds(intervals: list[tuple[float, float, float]], rows: list[dict[str, Any]]) -> float:
    """Independent reference: each second's energy times the value of the half hour that second falls in."""
    values = {wall(r["from"]): r["intensity"]["actual"] or r["intensity"]["forecast"] for r in rows}
    return sum(j / 3.6e6 * values[floor_to(s)] for s, _, j in intervals)


def test_energy_weighted_against_each_second(replay: Replay, tmp_path: Any) -> None:
    t0 = floor_to(time.time())
    rows = neso(replay, t0)
    start = t0 + 1500  # 21:25 in the recording: 177, then 161 from 21:30, then 143 from 22:00 to 22:05
    ivs = profile(start)
    fields, grams, warnings = live_intensity("GB", ivs, TABLE, env=env(replay, tmp_path), now=lambda: start + 2400)
    assert warnings == []
    assert abs(grams - by_seconds(ivs, rows)) < 1e-9
    assert fields["grid"] == "live" and fields["provider"] == "NESO" and fields["zone"] == "GB"
    assert fields["basis"] == "average, direct, consumption"
    assert fields["coverage"] == 1.0 and fields["actual_share"] == 0.0  # the recording is all forecast
    assert [p["g_per_kwh"] for p in fields["periods"]] == [177, 161, 143]
    assert abs(sum(p["energy_j"] for p in fields["periods"]) - sum(j for _, _, j in ivs)) < 1e-6
    time_mean = by_seconds([(s, e, 3.6e6 / len(ivs)) for s, e, _ in ivs], rows)
    assert abs(time_mean - (5 * 177 + 30 * 161 + 5 * 143) / 40) < 1e-9
    assert fields["g_per_kwh"] < time_mean  # more energy in the cleaner, later minutes
    assert fields["table_g_per_kwh"] == TABLE
    line = describe(fields, "GB")
    assert (
        line
        == f"GB live {fields['g_per_kwh']:.0f} g/kWh (NESO, average, direct, consumption, 0 % actual) vs 213 yearly"
    )


def test_request_padded_to_half_hours(replay: Replay, tmp_path: Any) -> None:
    # A range inside one half hour returns nothing from the API: the client pads out to the boundaries,
    # and the period *ending* at the padded start comes first (recorded at 21:00Z) and is not charged.
    t0 = floor_to(time.time())
    neso(replay, t0)
    ivs = [(t0 + 300.0, t0 + 900.0, 100.0)]
    fields, grams, warnings = live_intensity("GB", ivs, TABLE, env=env(replay, tmp_path), now=lambda: t0 + 900)
    (path,) = replay.paths("/intensity/")
    assert path == f"/intensity/{neso_time(t0)}/{neso_time(t0 + 1800)}"
    assert [p["g_per_kwh"] for p in fields["periods"]] == [177]
    assert warnings == [] and abs(grams - 100 / 3.6e6 * 177) < 1e-12


def test_published_actuals_price_actual(replay: Replay, tmp_path: Any) -> None:
    rows = fixture("uk-carbon-intensity/stuartharris__national_intensity.json")["data"]
    t0 = floor_to(time.time())
    replay.routes["/intensity/"] = NesoSeries(shift_neso(rows, t0 - wall("2023-07-05T00:00Z"))).answer
    ivs = [(t0 - 900.0, t0 + 900.0, 3600.0)]
    fields, _, warnings = live_intensity("UK", ivs, TABLE, env=env(replay, tmp_path), now=lambda: t0 + 3600)
    assert warnings == [] and fields["actual_share"] == 1.0
    assert [(p["g_per_kwh"], p["kind"]) for p in fields["periods"]] == [(129, "actual"), (122, "actual")]


def test_cache_cold_then_warm_then_actual_replaces_forecast(replay: Replay, tmp_path: Any) -> None:
    t0 = floor_to(time.time())
    forecast_rows = neso(replay, t0)
    e = env(replay, tmp_path)
    ivs = [(t0 + 60.0, t0 + 600.0, 500.0)]
    first = live_intensity("GB", ivs, TABLE, env=e, now=lambda: t0 + 600)
    assert len(replay.paths("/intensity/")) == 1
    later = [(t0 + 700.0, t0 + 1200.0, 500.0)]  # a second run in the same half hour
    second = live_intensity("GB", later, TABLE, env=e, now=lambda: t0 + 1200)
    assert len(replay.paths("/intensity/")) == 1, "two runs in one half hour must make one request"
    assert first[0]["periods"][0]["kind"] == second[0]["periods"][0]["kind"] == "forecast"
    # Half an hour on, NESO has published the actual for that period: the cache takes it over the forecast.
    published = [dict(r, intensity={**r["intensity"], "actual": 150}) for r in forecast_rows]
    replay.routes["/intensity/"] = NesoSeries(published).answer
    third = live_intensity("GB", ivs, TABLE, env=e, now=lambda: t0 + 2000)
    assert len(replay.paths("/intensity/")) == 2
    assert (third[0]["periods"][0]["g_per_kwh"], third[0]["periods"][0]["kind"]) == (150, "actual")
    # An actual is final: later runs over those minutes ask nothing, whatever the half hour.
    replay.routes["/intensity/"] = (500, b"")
    fourth = live_intensity("GB", ivs, TABLE, env=e, now=lambda: t0 + 9000)
    assert len(replay.paths("/intensity/")) == 2 and fourth[2] == []
    assert fourth[0]["periods"][0]["kind"] == "actual"
    # A later answer that still carries the forecast for that period does not undo the actual.
    replay.routes["/intensity/"] = NesoSeries(forecast_rows).answer
    wider = [(t0 + 60.0, t0 + 2400.0, 500.0)]
    fifth = live_intensity("GB", wider, TABLE, env=e, now=lambda: t0 + 9000)
    assert len(replay.paths("/intensity/")) == 3
    assert [(p["g_per_kwh"], p["kind"]) for p in fifth[0]["periods"]] == [(150, "actual"), (161, "forecast")]


def test_corrupt_cache_is_ignored(replay: Replay, tmp_path: Any) -> None:
    t0 = floor_to(time.time())
    neso(replay, t0)
    e = env(replay, tmp_path)
    ivs = [(t0 + 60.0, t0 + 600.0, 500.0)]
    live_intensity("GB", ivs, TABLE, env=e, now=lambda: t0 + 600)
    files = list((tmp_path / "cache").rglob("*.json"))
    assert files, "the cache wrote nothing"
    for f in files:
        f.write_bytes(b'{"periods": [[1, "x"')
    fields, _, warnings = live_intensity("GB", ivs, TABLE, env=e, now=lambda: t0 + 600)
    assert warnings == [] and fields["coverage"] == 1.0
    assert len(replay.paths("/intensity/")) == 2  # asked again instead of trusting garbage
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_regional_object_and_postcode(replay: Replay, tmp_path: Any) -> None:
    doc = fixture("uk-carbon-intensity/stuartharris__regional.json")
    t0 = floor_to(time.time())
    rows = shift_neso(doc["data"]["data"], t0 - wall("2023-07-05T00:00Z"))
    meta = {k: v for k, v in doc["data"].items() if k != "data"}
    replay.routes["/regional/intensity/"] = NesoSeries(rows, regional=meta).answer
    ivs = [(t0 - 600.0, t0 + 600.0, 1000.0)]
    fields, grams, warnings = live_intensity("GB-KT1", ivs, TABLE, env=env(replay, tmp_path), now=lambda: t0 + 900)
    assert warnings == []
    assert replay.paths()[0].endswith("/postcode/KT1")
    assert [(p["g_per_kwh"], p["kind"]) for p in fields["periods"]] == [(121, "forecast"), (116, "forecast")]
    assert abs(grams - (500 * 121 + 500 * 116) / 3.6e6) < 1e-12
    live_intensity("GB-14", ivs, TABLE, env=env(replay, tmp_path / "b"), now=lambda: t0 + 900)
    assert replay.paths()[-1].endswith("/regionid/14")


def fallback(server: Replay, tmp_path: Any, route: Any, **kw: Any) -> tuple[dict[str, Any], float, list[str]]:
    server.routes["/intensity/"] = route
    t0 = floor_to(time.time())
    ivs = [(t0 + 60.0, t0 + 660.0, 3600.0)]
    e = env(server, tmp_path, **kw.pop("extra", {}))
    result = live_intensity(kw.pop("region", "GB"), ivs, TABLE, env=e, now=lambda: t0 + 700, **kw)
    fields, grams, warnings = result
    assert len(warnings) == 1, warnings
    assert "yearly table (213 g/kWh)" in warnings[0] and "\n" not in warnings[0]
    assert fields["coverage"] == 0.0 and fields["g_per_kwh"] == TABLE
    assert abs(grams - 3600 / 3.6e6 * TABLE) < 1e-12
    return result


def test_http_errors_fall_back(replay: Replay, tmp_path: Any) -> None:
    assert "HTTP 404" in fallback(replay, tmp_path / "a", (404, b"{}"))[2][0]
    assert "HTTP 500" in fallback(replay, tmp_path / "b", (500, b"oops"))[2][0]
    assert "not JSON" in fallback(replay, tmp_path / "c", (200, b'{"data": [{"from": '))[2][0]
    assert "no 'data' list" in fallback(replay, tmp_path / "d", (200, b'{"status": "ok"}'))[2][0]
    assert "no figures" in fallback(replay, tmp_path / "e", (200, b'{"data": []}'))[2][0]


def test_hanging_server_and_cancel(replay: Replay, tmp_path: Any) -> None:
    warn = fallback(replay, tmp_path / "a", "hang", deadline_s=0.5)[2][0]
    assert "within 0.5 s" in warn
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    assert "cancelled" in fallback(replay, tmp_path / "b", "trickle", cancel=cancel)[2][0]


def test_offline_falls_back(tmp_path: Any) -> None:
    server = Replay()
    server.close()  # nothing listens on that port any more
    t0 = floor_to(time.time())
    e = {"CARBONWRAP_NESO_URL": server.url, "XDG_CACHE_HOME": str(tmp_path)}
    fields, _, warnings = live_intensity("GB", [(t0, t0 + 60, 10.0)], TABLE, env=e, now=lambda: t0 + 60)
    assert len(warnings) == 1 and "refused" in warnings[0] and fields["coverage"] == 0.0


def test_hole_in_series_is_priced_by_table(replay: Replay, tmp_path: Any) -> None:
    t0 = floor_to(time.time())
    rows = neso(replay, t0)
    holed = [r for r in rows if wall(r["from"]) != t0 + 1800]  # drop 21:30-22:00 from the recording
    replay.routes["/intensity/"] = NesoSeries(holed).answer
    ivs = [(t0 + 1200.0 + i, t0 + 1201.0 + i, 10.0) for i in range(1200)]  # 21:20-21:40
    fields, grams, warnings = live_intensity("GB", ivs, TABLE, env=env(replay, tmp_path), now=lambda: t0 + 2400)
    assert len(warnings) == 1 and "hole" in warnings[0] and "50 %" in warnings[0]
    assert abs(fields["coverage"] - 0.5) < 1e-9
    assert abs(grams - (6000 * 177 + 6000 * TABLE) / 3.6e6) < 1e-9


def test_no_provider_for_region(tmp_path: Any) -> None:
    fields, grams, warnings = live_intensity("US-eGRID-CAMX", [(0.0, 1.0, 3.6e6)], 195.0, env={})
    assert len(warnings) == 1 and "no live provider" in warnings[0]
    assert fields["coverage"] == 0.0 and grams == 195.0
