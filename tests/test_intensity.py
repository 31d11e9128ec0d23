"""The bundled intensity table: generation, lookup forms, typos, resolution order, the time-zone guess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from carbonwrap import intensity
from carbonwrap.errors import UsageError
from tests.conftest import ROOT, clean_env

TABLE = intensity.Table.load()
SHARED = ROOT.parent / "shared" / "data"


def test_packaged_tables_are_what_the_script_generates(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip("shared/data is not beside this checkout")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_tables.py"),
            "--source",
            str(SHARED),
            "--target",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    for name in ("regions.json", "cpu_power.json"):
        assert (tmp_path / name).read_text() == (ROOT / "carbonwrap" / "data" / name).read_text(), name


def test_every_row_keeps_year_and_source() -> None:
    assert len(TABLE.regions) == 211 + 92 + 137  # 92 subregions: CA-PE added (an import proxy)
    for r in TABLE.regions:
        assert 2000 < r.year < 2100 and r.source, r


@pytest.mark.parametrize(
    ("query", "code", "g"),
    [
        ("FR", "FR", 44.18),
        ("fr", "FR", 44.18),
        ("FRA", "FR", 44.18),
        ("fra", "FR", 44.18),
        ("France", "FR", 44.18),
        ("US-CA", "US-CA", 207.5),
        ("ca-qc", "CA-QC", 1.5),
        ("US-eGRID-CAMX", "US-eGRID-CAMX", 195.0),
        ("us-egrid-camx", "US-eGRID-CAMX", 195.0),
        ("aws:eu-west-3", "aws:eu-west-3", 44.18),
        ("AWS:US-EAST-1", "aws:us-east-1", 270.5),
        ("gcp:europe-west1", "gcp:europe-west1", None),
        ("azure:francecentral", "azure:francecentral", 44.18),
        ("WLD", "WLD", 472.94),
        ("EU", "EU", 213.02),
    ],
)
def test_lookup_forms(query: str, code: str, g: float | None) -> None:
    r = TABLE.lookup(query)
    assert r.code == code
    if g is not None:
        assert r.g_per_kwh == g


def test_a_typo_lists_close_matches() -> None:
    with pytest.raises(UsageError) as e:
        TABLE.lookup("FRX")
    assert "unknown region 'FRX'" in str(e.value) and "FR" in str(e.value) and "carbonwrap regions" in str(e.value)
    with pytest.raises(UsageError) as e:
        TABLE.lookup("aws:eu-west-9")
    assert "aws:eu-west-" in str(e.value)
    with pytest.raises(UsageError) as e:
        TABLE.lookup("Frnace")
    assert "FR" in str(e.value)


def _zoneinfo(tmp_path: Path) -> Path:
    z = tmp_path / "zoneinfo"
    z.mkdir()
    (z / "zone.tab").write_text("# comment\nFR\t+4852+00220\tEurope/Paris\nDE\t+5230+01322\tEurope/Berlin\n")
    return z


def test_time_zone_guess_from_tz_localtime_and_timezone(tmp_path: Path) -> None:
    zi = _zoneinfo(tmp_path)
    etc = tmp_path / "etc"
    etc.mkdir()
    assert intensity.guess_country({"TZ": "Europe/Paris"}, etc, zi) == ("FR", "Europe/Paris")
    assert intensity.guess_country({"TZ": ":Europe/Berlin"}, etc, zi) == ("DE", "Europe/Berlin")
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    assert intensity.guess_country({}, etc, zi) == ("DE", "Europe/Berlin")
    (etc / "localtime").unlink()
    (etc / "timezone").write_text("Europe/Paris\n")
    assert intensity.guess_country({}, etc, zi) == ("FR", "Europe/Paris")
    assert intensity.guess_country({"TZ": "Etc/UTC"}, etc, zi) is None


def _resolve(tmp_path: Path, **kw: object) -> intensity.Intensity:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    args: dict = {"intensity": None, "region": None, "region_from_env": False, "env": {}}
    args.update(kw)
    return intensity.resolve(
        TABLE,
        etc=etc,
        zoneinfo=_zoneinfo(tmp_path) if not (tmp_path / "zoneinfo").exists() else tmp_path / "zoneinfo",
        **args,
    )


def test_resolution_order(tmp_path: Path) -> None:
    paris = {"TZ": "Europe/Paris"}
    it = _resolve(tmp_path, intensity=12.5, region="DE", env=paris)
    assert (it.g_per_kwh, it.how, it.region) == (12.5, "intensity", "DE")
    it = _resolve(tmp_path, region="de", env=paris)
    assert (it.region, it.how) == ("DE", "flag")
    it = _resolve(tmp_path, region="de", region_from_env=True, env=paris)
    assert it.how == "env"
    it = _resolve(tmp_path, env=paris)
    assert (it.region, it.how, it.note) == ("FR", "time zone", "guessed from time zone Europe/Paris")
    it = _resolve(tmp_path, env={"TZ": "Etc/UTC"})
    assert (it.region, it.how, it.g_per_kwh) == ("WLD", "default", 472.94)
    assert "no region set" in it.note


def test_cli_region_sources(cw, tmp_path: Path) -> None:
    def rec(*args: str, **env: str) -> dict:
        out = tmp_path / "r.json"
        r = cw("-q", "-o", str(out), *args, "--", "true", env=clean_env(**env))
        assert r.returncode == 0, r.stderr
        return json.loads(out.read_text())["intensity"]

    assert rec("--region", "FR", CARBONWRAP_REGION="DE")["how"] == "flag"
    assert rec(CARBONWRAP_REGION="DE")["region"] == "DE"
    assert rec(CARBONWRAP_REGION="DE")["how"] == "env"
    assert rec(TZ="Europe/Paris")["how"] == "time zone"
    it = rec("--intensity", "100")
    assert (it["g_per_kwh"], it["how"]) == (100.0, "intensity")
    it = rec()
    assert it["how"] == "default"


def test_regions_command_lists_and_searches(cw) -> None:
    r = cw("regions")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 1 + 440
    r = cw("regions", "france")
    out = r.stdout.decode()
    assert "FR " in out and "44.18" in out and "2024" in out and "Ember" in out
    assert "azure:francecentral" in out
    assert cw("regions", "fr").stdout.decode().splitlines()[1].startswith("FR ")  # the exact code first
    r = cw("regions", "zzzznothing")
    assert r.returncode == 1 and b"no region matches" in r.stderr


def test_unknown_region_exits_2_before_launch(cw, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = cw("--region", "FRANC", "--", "touch", str(marker))
    assert r.returncode == 2
    assert not marker.exists()
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "did you mean" in err[0] and "FR" in err[0]


def test_a_published_zero_is_kept_but_flagged(tmp_path: Path) -> None:
    it = _resolve(tmp_path, region="CF")
    assert it.g_per_kwh == 0.0
    assert "implausible" in it.note and "--intensity" in it.note
