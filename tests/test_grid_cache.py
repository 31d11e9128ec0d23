"""The live-intensity cache across midnight: a period is filed under the day it starts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from carbonwrap.grid.cache import Cache
from carbonwrap.grid.series import Period


def test_a_period_that_began_yesterday_is_found_after_midnight(tmp_path: Path) -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
    cache = Cache(tmp_path, "electricitymaps", "DE")
    hour = Period(midnight - 54 * 60, midnight + 6 * 60, 552.0, "forecast")  # 23:06 to 00:06
    cache.store(
        "forecast",
        (midnight, midnight),
        midnight + 60,
        [hour, Period(hour.end_s, hour.end_s + 3600, 538.0, "forecast")],
    )
    got = cache.periods(midnight + 60, midnight + 120)  # 00:01-00:02: inside the hour that began yesterday
    assert [p.g_per_kwh for p in got] == [552.0]
