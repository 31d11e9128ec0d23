"""Regions (issue 15 item 9): UK as GB, common English names, tzdata links, and the state or province a
time zone lies in (SPEC.md section 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbonwrap import intensity

TABLE = intensity.Table.load()
SYSTEM_ZONEINFO = Path("/usr/share/zoneinfo")

ZONE_TAB = "\n".join(
    [
        "# tzdata zone.tab, cut down",
        "IN\t+2232+08822\tAsia/Kolkata",
        "UA\t+5026+03031\tEurope/Kyiv",
        "CA\t+4339-07923\tAmerica/Toronto",
        "CA\t+4916-12307\tAmerica/Vancouver",
        "CA\t+5333-11328\tAmerica/Edmonton",
        "US\t+211825-1575130\tPacific/Honolulu",
        "US\t+332654-1120424\tAmerica/Phoenix",
        "US\t+404251-0740023\tAmerica/New_York",
        "GB\t+513030-0000731\tEurope/London",
    ]
)


def zoneinfo(tmp_path: Path, links: str = "tzdata.zi") -> Path:
    """A zoneinfo folder as tzdata installs it: zone.tab, and the backward links in tzdata.zi or as
    symbolic links between zone files."""
    z = tmp_path / "zoneinfo"
    z.mkdir()
    (z / "zone.tab").write_text(ZONE_TAB + "\n")
    pairs = [("Asia/Kolkata", "Asia/Calcutta"), ("Europe/Kyiv", "Europe/Kiev"), ("America/Toronto", "America/Montreal")]
    if links == "tzdata.zi":
        (z / "tzdata.zi").write_text("# version 2025b\n" + "".join(f"L {t} {n}\n" for t, n in pairs))
    else:
        for target, name in pairs:
            (z / target).parent.mkdir(parents=True, exist_ok=True)
            (z / target).write_bytes(b"TZif")
            (z / name).parent.mkdir(parents=True, exist_ok=True)
            (z / name).symlink_to(Path(target).name if Path(target).parent == Path(name).parent else z / target)
    return z


def resolve(tz: str, zi: Path, tmp_path: Path) -> intensity.Intensity:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    return intensity.resolve(
        TABLE, intensity=None, region=None, region_from_env=False, env={"TZ": tz}, etc=etc, zoneinfo=zi
    )


@pytest.mark.parametrize("links", ["tzdata.zi", "symlinks"])
@pytest.mark.parametrize(
    ("tz", "code"),
    [
        ("Asia/Calcutta", "IN"),
        ("Europe/Kiev", "UA"),
        ("America/Montreal", "CA-QC"),  # a link to Toronto, but it names Quebec
        ("America/Vancouver", "CA-BC"),
        ("America/Edmonton", "CA-AB"),
        ("Pacific/Honolulu", "US-HI"),
        ("America/Phoenix", "US-AZ"),
        ("America/New_York", "US"),  # shared by many states: the country
        ("Europe/London", "GB"),
    ],
)
def test_time_zone_guess(tmp_path: Path, links: str, tz: str, code: str) -> None:
    it = resolve(tz, zoneinfo(tmp_path, links), tmp_path)
    assert (it.region, it.how, it.note) == (code, "time zone", f"guessed from time zone {tz}")
    assert it.year and it.source


def test_time_zone_guess_with_this_systems_tzdata(tmp_path: Path) -> None:
    if not (SYSTEM_ZONEINFO / "zone.tab").exists():
        pytest.skip("no system tzdata")
    for tz, code in (("Asia/Calcutta", "IN"), ("Europe/Kiev", "UA"), ("America/Vancouver", "CA-BC")):
        assert resolve(tz, SYSTEM_ZONEINFO, tmp_path).region == code, tz


def test_uk_is_gb_and_common_names_find_their_rows() -> None:
    assert TABLE.lookup("UK").code == "GB"
    assert TABLE.lookup("uk").code == "GB"
    assert TABLE.lookup("Britain").code == "GB"
    assert "GB" in TABLE.suggest("UKK")
    for query, code in (("turkey", "TR"), ("vietnam", "VN"), ("britain", "GB"), ("uk", "GB"), ("usa", "US")):
        assert TABLE.search(query)[0].code == code, query


def test_every_province_is_present_with_its_year_and_source() -> None:
    provinces = {"AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"}
    for p in provinces:
        r = TABLE.lookup(f"CA-{p}")
        assert r.year and r.source, r
    pe = TABLE.lookup("CA-PE")
    assert pe.g_per_kwh == 290.0 and pe.source.startswith("proxy: New Brunswick")


def test_regions_command_finds_common_names(cw) -> None:
    for query, code in (("turkey", "TR"), ("vietnam", "VN"), ("britain", "GB"), ("uk", "GB"), ("usa", "US")):
        r = cw("regions", query)
        assert r.returncode == 0, (query, r.stderr)
        assert r.stdout.decode().splitlines()[1].startswith(code), query
    r = cw("-q", "--region", "UK", "--", "true")
    assert r.returncode == 0, r.stderr
