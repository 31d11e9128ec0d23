#!/usr/bin/env python3
"""Generate carbonwrap/data/*.json from the source CSVs in shared/data (see shared/data/SOURCES.md)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data"
DEFAULT_TARGET = HERE.parent / "carbonwrap" / "data"

# Common English names that the source tables' own names miss (`carbonwrap regions QUERY`, `--region NAME`).
# UK is an alias of GB (SPEC.md section 4).
COMMON_NAMES: dict[str, list[str]] = {
    "GB": ["UK", "Britain", "Great Britain", "England", "Scotland", "Wales"],
    "TR": ["Turkey"],
    "VN": ["Vietnam"],
    "US": ["United States of America", "America"],
    "CZ": ["Czech Republic"],
    "KR": ["Korea", "Republic of Korea"],
    "KP": ["DPRK"],
    "RU": ["Russian Federation"],
    "NL": ["Holland"],
    "SZ": ["Swaziland"],
    "MK": ["Macedonia"],
    "CI": ["Ivory Coast"],
    "CV": ["Cape Verde"],
    "CD": ["DRC", "Democratic Republic of the Congo"],
    "CG": ["Republic of the Congo"],
    "LA": ["Laos"],
    "AE": ["UAE"],
    "MM": ["Burma"],
    "BN": ["Brunei"],
}

# Time zones whose people live mostly in one US state or Canadian province (tzdata's zone.tab comments;
# links are listed under their own names where they name a different place, as America/Montreal does).
# A zone shared by several states (America/New_York, America/Chicago, America/Denver) is left to the
# country figure.
ZONE_SUBREGIONS: dict[str, str] = {
    "America/Vancouver": "CA-BC",
    "America/Dawson_Creek": "CA-BC",
    "America/Fort_Nelson": "CA-BC",
    "America/Creston": "CA-BC",
    "America/Edmonton": "CA-AB",
    "America/Regina": "CA-SK",
    "America/Swift_Current": "CA-SK",
    "America/Winnipeg": "CA-MB",
    "America/Toronto": "CA-ON",
    "America/Thunder_Bay": "CA-ON",
    "America/Nipigon": "CA-ON",
    "America/Rainy_River": "CA-ON",
    "America/Atikokan": "CA-ON",
    "America/Montreal": "CA-QC",
    "America/Blanc-Sablon": "CA-QC",
    "America/Moncton": "CA-NB",
    "America/Halifax": "CA-NS",
    "America/Glace_Bay": "CA-NS",
    "America/St_Johns": "CA-NL",
    "America/Goose_Bay": "CA-NL",
    "America/Whitehorse": "CA-YT",
    "America/Dawson": "CA-YT",
    "America/Yellowknife": "CA-NT",
    "America/Inuvik": "CA-NT",
    "America/Iqaluit": "CA-NU",
    "America/Pangnirtung": "CA-NU",
    "America/Rankin_Inlet": "CA-NU",
    "America/Resolute": "CA-NU",
    "America/Cambridge_Bay": "CA-NU",
    "Pacific/Honolulu": "US-HI",
    "America/Phoenix": "US-AZ",
    "America/Los_Angeles": "US-CA",
    "America/Anchorage": "US-AK",
    "America/Juneau": "US-AK",
    "America/Sitka": "US-AK",
    "America/Metlakatla": "US-AK",
    "America/Yakutat": "US-AK",
    "America/Nome": "US-AK",
    "America/Adak": "US-AK",
    "America/Boise": "US-ID",
    "America/Detroit": "US-MI",
    "America/Menominee": "US-MI",
    "America/Indiana/Indianapolis": "US-IN",
    "America/Indiana/Knox": "US-IN",
    "America/Indiana/Marengo": "US-IN",
    "America/Indiana/Petersburg": "US-IN",
    "America/Indiana/Tell_City": "US-IN",
    "America/Indiana/Vevay": "US-IN",
    "America/Indiana/Vincennes": "US-IN",
    "America/Indiana/Winamac": "US-IN",
    "America/Kentucky/Louisville": "US-KY",
    "America/Kentucky/Monticello": "US-KY",
    "America/North_Dakota/Center": "US-ND",
    "America/North_Dakota/New_Salem": "US-ND",
    "America/North_Dakota/Beulah": "US-ND",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def build_regions(src: Path) -> list[dict[str, object]]:
    """One entry per region code; every entry keeps the year and the source of its figure."""
    out: list[dict[str, object]] = []
    for r in _rows(src / "grid-intensity-countries.csv"):
        code = r["iso2"] or r["iso3"]  # the World row has no alpha-2 code
        out.append(
            {
                "code": code,
                "alias": r["iso3"],
                "kind": "country",
                "name": r["name"],
                "g_per_kwh": float(r["gco2_per_kwh"]),
                "year": int(r["year"]),
                "source": r["source"],
            }
        )
    for r in _rows(src / "grid-intensity-subregions.csv"):
        out.append(
            {
                "code": r["code"],
                "alias": None,
                "kind": "subregion",
                "name": r["name"],
                "g_per_kwh": float(r["gco2_per_kwh"]),
                "year": int(r["year"]),
                "source": r["source"],
            }
        )
    for r in _rows(src / "grid-intensity-cloud.csv"):
        out.append(
            {
                "code": f"{r['provider']}:{r['region']}",
                "alias": None,
                "kind": "cloud",
                "name": r["location"],
                "g_per_kwh": float(r["gco2_per_kwh"]),
                "year": int(r["year"]),
                "source": r["source"],
            }
        )
    codes = [str(e["code"]).upper() for e in out]
    dupes = {c for c in codes if codes.count(c) > 1}
    if dupes:
        raise SystemExit(f"duplicate region codes in the source tables: {sorted(dupes)}")
    by_code = {str(e["code"]): e for e in out}
    for code, names in COMMON_NAMES.items():
        if code not in by_code:
            raise SystemExit(f"COMMON_NAMES names {code}, which the source tables lack")
        by_code[code]["also"] = names
    missing = sorted({c for c in ZONE_SUBREGIONS.values() if c not in by_code})
    if missing:
        raise SystemExit(f"ZONE_SUBREGIONS names {missing}, which the source tables lack")
    return out


def build_cpu_power(src: Path) -> list[dict[str, object]]:
    return [
        {
            "microarchitecture": r["microarchitecture"],
            "vendor": r["vendor"],
            "idle_w_per_thread": float(r["min_w_per_thread"]),
            "max_w_per_thread": float(r["max_w_per_thread"]),
            "source": r["source"],
        }
        for r in _rows(src / "cpu-power-per-thread.csv")
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the source CSVs")
    p.add_argument("--target", type=Path, default=DEFAULT_TARGET, help="package data folder")
    a = p.parse_args()
    note = "generated by scripts/build_tables.py from shared/data; do not edit by hand"
    a.target.mkdir(parents=True, exist_ok=True)
    tables = {
        "regions.json": {"note": note, "regions": build_regions(a.source), "zones": ZONE_SUBREGIONS},
        "cpu_power.json": {"note": note, "models": build_cpu_power(a.source)},
    }
    for name, doc in tables.items():
        text = json.dumps(doc, indent=0, ensure_ascii=False, sort_keys=False) + "\n"
        (a.target / name).write_text(text, encoding="utf-8")
        print(f"wrote {a.target / name}")


if __name__ == "__main__":
    main()
