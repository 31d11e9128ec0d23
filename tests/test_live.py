"""The live panel in a real terminal (tmux): output intact, panel visible, terminal restored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbonwrap.report.live import LivePanel, sparkline
from tests.conftest import ROOT, require_real
from tests.replay import Replay, replay

PY = sys.executable
assert replay  # the fixture, imported for pytest
PRINT_500 = (
    f"{PY} -c \"import time\nfor i in range(1, 501): print(f'line {{i:04d}} ' + 'x' * 40, flush=True); "
    'time.sleep(0.006)"'
)


class Tmux:
    def __init__(self, exe: str, tmp: Path) -> None:
        self.exe, self.sock, self.tmp = exe, f"cw-{uuid.uuid4().hex[:8]}", tmp

    def __call__(self, *args: str) -> str:
        return subprocess.run([self.exe, "-L", self.sock, *args], capture_output=True, text=True, check=True).stdout

    def start(self, cols: int, rows: int) -> None:
        env = f"PATH={os.environ['PATH']} PYTHONPATH={ROOT} TZ=Etc/UTC HOME={self.tmp} TERM=xterm-256color"
        self(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(cols),
            "-y",
            str(rows),
            f"env -i {env} bash --norc --noprofile",
        )
        self("set-option", "-g", "history-limit", "10000")
        self("set-option", "-g", "window-size", "manual")
        self.type(f"PS1='$ '; cd {self.tmp}; clear")

    def type(self, line: str) -> None:
        self("send-keys", "-t", "t", "-l", line)
        self("send-keys", "-t", "t", "Enter")

    def run(self, command: str, timeout: float = 30) -> str:
        """Run a command line in the pane; returns its exit status, once the shell has printed it."""
        return self.wait_marker(self.start_command(command), timeout)

    def start_command(self, command: str) -> str:
        marker = f"EXIT-{uuid.uuid4().hex[:6]}"
        self.type(f"{command}; echo {marker}=$?")
        return marker

    def wait_marker(self, marker: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(rf"^{marker}=(\d+)", self.history(), re.M)
            if found:
                return found.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no {marker} in:\n{self.history()}")

    def screen(self) -> list[str]:
        return self("capture-pane", "-t", "t", "-p").split("\n")[:-1]

    def history(self) -> str:
        return self("capture-pane", "-t", "t", "-p", "-J", "-S", "-", "-E", "-")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(require_real("tmux"), tmp_path)
    t.start(100, 30)
    yield t
    subprocess.run([t.exe, "-L", t.sock, "kill-server"], capture_output=True, check=False)


def _wait_for(tmux: Tmux, pattern: str, timeout: float = 15) -> list[str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        screen = tmux.screen()
        if any(re.search(pattern, line) for line in screen):
            return screen
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared:\n" + "\n".join(tmux.screen()))


def _assert_lines_once_in_order(history: str, n: int) -> None:
    found = re.findall(r"line (\d{4}) (x*)", history)
    numbers = [int(k) for k, _ in found]
    assert numbers == list(range(1, n + 1)), numbers[:20]
    assert all(len(xs) == 40 for _, xs in found), "a line was cut or garbled"


def _assert_full_height_afterwards(tmux: Tmux) -> None:
    tmux.run("for i in $(seq 1 60); do echo after-$i; done")
    screen = tmux.screen()
    height = len(screen)
    # With the scroll region reset, output scrolls through every row: the last line above the prompt is at the
    # bottom, and no panel text is left on screen.
    assert screen[height - 1].startswith("$"), screen
    assert "after-60" in screen[height - 3] or "after-60" in screen[height - 2], screen
    assert not any("carbonwrap:" in line for line in screen), screen


def test_output_intact_panel_visible_and_terminal_restored(tmux: Tmux) -> None:
    marker = tmux.start_command(f"carbonwrap -i 0.2 --region FR -- {PRINT_500}")
    screen = _wait_for(tmux, r"^line 02\d\d")
    panel = [i for i, line in enumerate(screen) if "carbonwrap: python" in line]
    assert panel and panel[0] == len(screen) - 4, screen  # the panel holds the bottom four rows
    assert any("cpu" in line and "estimated" in line for line in screen[-3:])
    assert any("FR 44.18 g/kWh" in line for line in screen[-3:])
    assert tmux.wait_marker(marker) == "0"
    _assert_lines_once_in_order(tmux.history(), 500)
    assert "CO2e" in tmux.history()  # the summary took the panel's place
    _assert_full_height_afterwards(tmux)


def test_command_killed_with_sigkill_mid_run(tmux: Tmux) -> None:
    cmd = (
        f"{PY} -c \"import os, time\nfor i in range(1, 201): print(f'line {{i:04d}} ' + 'x' * 40, flush=True); "
        'time.sleep(0.01)\nos.kill(os.getpid(), 9)"'
    )
    assert tmux.run(f"carbonwrap -i 0.2 -- {cmd}") == "137"
    history = tmux.history()
    _assert_lines_once_in_order(history, 200)
    assert "killed by signal 9" in history
    _assert_full_height_afterwards(tmux)


def test_window_resize_mid_run(tmux: Tmux) -> None:
    marker = tmux.start_command(f"carbonwrap -i 0.2 -- {PRINT_500}")
    _wait_for(tmux, r"^line 01\d\d")
    tmux("resize-window", "-t", "t", "-x", "120", "-y", "40")
    screen = _wait_for(tmux, r"^line 03\d\d")
    assert len(screen) == 40
    assert any("carbonwrap: python" in line for line in screen[-4:]), screen
    assert tmux.wait_marker(marker) == "0"
    _assert_lines_once_in_order(tmux.history(), 500)
    _assert_full_height_afterwards(tmux)


def test_small_terminal_gets_a_one_line_status(tmux: Tmux) -> None:
    tmux("resize-window", "-t", "t", "-x", "60", "-y", "8")
    marker = tmux.start_command(f"carbonwrap -i 0.2 -- {PRINT_500}")
    _wait_for(tmux, r"^line 01")
    screen = _wait_for(tmux, r"^carbonwrap \d+:\d\d:\d\d")
    assert screen[-1].startswith("carbonwrap ") and any("line" in row for row in screen[:-1])
    assert tmux.wait_marker(marker) == "0"
    _assert_lines_once_in_order(tmux.history(), 500)


@pytest.mark.parametrize("flag", ["--no-live", "-q"])
def test_no_live_and_quiet_draw_nothing(tmux: Tmux, flag: str) -> None:
    marker = tmux.start_command(f"carbonwrap {flag} -i 0.2 -- {PRINT_500}")
    _wait_for(tmux, r"^line 02\d\d")
    assert not any("carbonwrap" in line for line in tmux.screen())
    assert tmux.wait_marker(marker) == "0"
    if flag == "-q":
        assert "CO2e" not in tmux.history()  # no summary either


def test_full_screen_program_is_left_alone(tmux: Tmux) -> None:
    require_real("less")
    (tmux.tmp / "notes.txt").write_text("".join(f"note {i}\n" for i in range(200)))
    marker = tmux.start_command("carbonwrap -i 0.2 less notes.txt")
    screen = _wait_for(tmux, r"^note 0$")
    time.sleep(0.6)
    screen = tmux.screen()
    assert not any("carbonwrap" in line for line in screen), screen
    assert screen[len(screen) - 2] == "note 28"  # less fills the whole height
    tmux("send-keys", "-t", "t", "q")
    assert tmux.wait_marker(marker) == "0"
    _assert_full_height_afterwards(tmux)


def test_sigterm_to_carbonwrap_restores_the_terminal(tmux: Tmux) -> None:
    marker = tmux.start_command(
        f"carbonwrap -i 0.2 -- {PY} -c \"print('ready', flush=True); import time; time.sleep(30)\""
    )
    _wait_for(tmux, r"carbonwrap: python")
    subprocess.run(["pkill", "-TERM", "-f", "carbonwrap -i 0.2 -- "], check=False)
    assert tmux.wait_marker(marker) == "143"
    assert "forwarded to the command: SIGTERM" in tmux.history()
    _assert_full_height_afterwards(tmux)


def test_progress_lines_off_a_terminal(cw) -> None:
    r = cw("--progress", "0.2", "-i", "0.1", "--", "sleep", "1")
    lines = [x for x in r.stderr.decode().splitlines() if "so far" in x]
    assert 3 <= len(lines) <= 6, lines
    assert all(re.match(r"carbonwrap: \d+ s, .+ J, .+ CO2e so far", x) for x in lines)


def test_redraws_are_rate_limited_and_colour_follows_no_color() -> None:
    r, w = os.pipe()
    clock = [0.0]
    size = os.terminal_size((80, 24))
    panel = LivePanel("job", "FR 44 g/kWh", {"cpu"}, fd=w, color=False, size=lambda: size, clock=lambda: clock[0])
    panel.start()
    for k in range(40):  # 40 samples in one second
        clock[0] = k * 0.025
        panel.update(k * 0.025, {"cpu": 10.0}, k * 0.25, 0.001)
    panel.stop()
    os.close(w)
    out = os.read(r, 1 << 20).decode()
    os.close(r)
    assert panel.draws == 4  # at most 4 a second
    assert "\x1b[1;20r" in out and out.endswith("\x1b8") and "\x1b[r" in out
    assert "\x1b[7m" not in out and "\x1b[2m" not in out  # NO_COLOR: no styling
    assert "cpu 10.0 W estimated" in out


def test_sparkline() -> None:
    assert sparkline([0, 5, 10], 10) == "▁▅█"
    assert sparkline([3.0] * 100, 60) == "█" * 60
    assert sparkline([], 10) == ""


def test_the_command_still_sees_a_terminal(tmux: Tmux) -> None:
    probe = f"{PY} -c \"import sys; print('isatty', sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty())\""
    assert tmux.run(f"carbonwrap -- {probe}") == "0"
    assert "isatty True True True" in tmux.history()


def test_the_clock_ticks_before_the_first_sample(tmux: Tmux) -> None:
    # With -i 60 no sample comes in the 4 s the command runs; the panel's clock must move on its own.
    marker = tmux.start_command(f'carbonwrap -i 60 -- {PY} -c "import time; time.sleep(4)"')
    _wait_for(tmux, r"carbonwrap: python.*0:00:0[2-9]")
    assert tmux.wait_marker(marker) == "0"


def test_the_panel_labels_the_commands_power_and_the_machines(tmux: Tmux) -> None:
    marker = tmux.start_command(f"carbonwrap -i 0.2 -- {PRINT_500}")
    screen = _wait_for(tmux, r"power  command cpu")
    assert any(re.search(r"command cpu \d+\.\d W estimated .*\(machine \d+\.\d W\)", line) for line in screen), screen
    assert tmux.wait_marker(marker) == "0"


@pytest.mark.parametrize("how", ["TERM=dumb carbonwrap", "carbonwrap"])
def test_no_panel_for_a_dumb_terminal_or_a_background_job(tmux: Tmux, how: str) -> None:
    background = how == "carbonwrap"
    line = f"{how} --live -i 0.2 -- sleep 2" + (" & wait" if background else "")
    marker = tmux.start_command(line)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:  # while it runs, no panel is ever drawn
        assert not any("── carbonwrap" in row or "waiting for the first sample" in row for row in tmux.screen())
        time.sleep(0.05)
    assert tmux.wait_marker(marker) == "0"


def test_a_zero_sized_terminal_gets_no_panel() -> None:
    import fcntl
    import pty
    import termios

    from carbonwrap.report.live import usable_terminal

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x00" * 8)  # 0 x 0, as some CI runners' ptys are
        assert not usable_terminal(slave, {"TERM": "xterm"})
        assert not usable_terminal(slave, {"TERM": "dumb"})
    finally:
        os.close(master)
        os.close(slave)


def test_a_countdown_while_waiting_for_a_cleaner_grid(tmux: Tmux, replay: Replay) -> None:
    from tests.test_run_stream import _em_forecast

    boundary = float(int(time.time()) + 6)
    _em_forecast(replay, boundary)
    env = f"CARBONWRAP_ELECTRICITYMAPS_URL={replay.url} ELECTRICITYMAPS_TOKEN=tok XDG_CACHE_HOME={tmux.tmp}/c"
    marker = tmux.start_command(f"env {env} carbonwrap --region em:DE --start-within 1m --expect 2s -- echo started")
    _wait_for(tmux, r"carbonwrap: starting in 0:00:0[1-6] \(waiting for a cleaner grid")
    assert tmux.wait_marker(marker) == "0"
    history = tmux.history()
    assert "started" in history and "starting in" not in history.split("started")[-1]
