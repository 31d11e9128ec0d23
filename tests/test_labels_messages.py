"""Labels and messages (issue 15 items 10 and 11): the interpreter rule of SPEC.md section 1, errors that
name the variable they came from, unknown CARBONWRAP_* variables, and doctor honouring the wrap options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from carbonwrap.cli.params import default_label, unknown_variables
from tests.conftest import clean_env
from tests.fakes import FAKE_NVML, empty


@pytest.mark.parametrize(
    ("command", "label"),
    [
        ("python3 train.py --epochs 3", "train.py"),
        ("/usr/bin/python3.11 -u -X dev -W ignore eval.py", "eval.py"),
        ("python -m torch.distributed.run --nproc 8 train.py", "torch.distributed.run"),
        ("python3 -mhttp.server", "http.server"),
        ("python3 -c print(1)", "python3"),
        ("python3 -", "python3"),
        ("node --require ts-node/register app.ts", "app.ts"),
        ("node -e 1", "node"),
        ("bash -eu ./nightly.sh", "nightly.sh"),
        ("bash -o pipefail run.sh", "run.sh"),
        ("sh -c ls", "sh"),
        ("sh -ec ls", "sh"),
        ("ruby -Ilib bin/tool.rb", "tool.rb"),
        ("perl -w scripts/x.pl", "x.pl"),
        ("perl -we 1", "perl"),
        ("Rscript --vanilla model.R", "model.R"),
        ("java -Xmx2g -jar build/app.jar serve", "app.jar"),
        ("java Main", "java"),
        ("make -j8", "make"),
        ("./bin/run", "run"),
    ],
)
def test_interpreter_rule(command: str, label: str) -> None:
    assert default_label(command.split()) == label


def test_the_label_in_the_record(cw, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("pass\n")
    rec = tmp_path / "r.json"
    r = cw("-q", "-o", str(rec), "--", "python3", "-u", str(script))
    assert r.returncode == 0, r.stderr
    assert json.loads(rec.read_text())["label"] == "train.py"


def test_a_bad_value_from_the_environment_names_the_variable(cw) -> None:
    for value, why in (("0.5", "must be 1.0 or more"), ("abc", "not a valid float")):
        r = cw("-q", "true", env=clean_env(CARBONWRAP_PUE=value))
        assert r.returncode == 2
        text = r.stderr.decode()
        assert "CARBONWRAP_PUE" in text and "--pue" not in text and why in text
        assert len(text.strip().splitlines()) == 1
    r = cw("-q", "--pue", "0.5", "true")
    assert r.returncode == 2 and "'--pue'" in r.stderr.decode()
    r = cw("-q", "true", env=clean_env(CARBONWRAP_REGION="Atlantis"))
    assert r.returncode == 2 and r.stderr.decode().startswith("carbonwrap: CARBONWRAP_REGION: unknown region")


def test_unknown_variables_get_one_warning_with_the_closest_option() -> None:
    env = {
        "CARBONWRAP_REGOIN": "FR",
        "CARBONWRAP_REGION": "FR",
        "CARBONWRAP_PARENT_ID": "x",
        "CARBONWRAP_MARKS": "/tmp/m",
        "CARBONWRAP_PUSHGATEWAY_AUTH": "u:p",
        "CARBONWRAP_NESO_URL": "http://x",
        "CARBONWRAP_ENERGINET_URL": "http://x",
        "CARBONWRAP_ELECTRICITYMAPS_URL": "http://x",
        "CARBONWRAP_REQUIRE_REAL": "1",
        "HOME": "/root",
    }
    out = unknown_variables(env, ["region", "interval", "pue", "push_interval"])
    assert out == [
        "CARBONWRAP_REGOIN is not a carbonwrap setting and is ignored; did you mean CARBONWRAP_REGION (--region)?"
    ]
    out = unknown_variables({"CARBONWRAP_PUSH_INTERVALS": "9"}, ["region", "push_interval"])
    assert out[0].endswith("did you mean CARBONWRAP_PUSH_INTERVAL (--push-interval)?")


def test_a_misspelt_variable_warns_once_through_the_cli(cw) -> None:
    r = cw("-q", "true", env=clean_env(CARBONWRAP_REGOIN="FR"))
    assert r.returncode == 0
    text = r.stderr.decode()
    assert text.count("CARBONWRAP_REGOIN") == 1 and "CARBONWRAP_REGION (--region)" in text


def test_doctor_shows_the_cpu_watts_override(cw, tmp_path: Path) -> None:
    r = cw("--cpu-watts", "1:5", "doctor", "--sysfs", str(empty(tmp_path)))
    assert r.returncode == 1
    text = r.stdout.decode()
    assert "--cpu-watts override: 1-5 W per thread" in text and "model row:" not in text


def test_doctor_honours_gpu_and_no_gpu(cw, tmp_path: Path) -> None:
    # No NVIDIA driver on this VM: only --gpu makes doctor try NVML (here the fake, first on PYTHONPATH).
    (tmp_path / "nvml.json").write_text(json.dumps({"driver": "550.54.15", "devices": [{"name": "Fake H100"}]}))
    env = clean_env(FAKE_NVML_CONFIG=str(tmp_path / "nvml.json"))
    env["PYTHONPATH"] = f"{FAKE_NVML}{os.pathsep}{env['PYTHONPATH']}"
    sysfs = str(empty(tmp_path / "sys"))
    r = cw("--gpu", "doctor", "--json", "--sysfs", sysfs, env=env)
    gpu = next(f for f in json.loads(r.stdout)["findings"] if f["topic"] == "gpu")
    assert gpu["status"] == "measured" and any("Fake H100" in d for d in gpu["details"]), gpu
    r = cw("--no-gpu", "doctor", "--json", "--sysfs", sysfs, env=env)
    gpu = next(f for f in json.loads(r.stdout)["findings"] if f["topic"] == "gpu")
    assert gpu["status"] == "absent" and "--no-gpu" in gpu["summary"]
