"""The live panel, pinned to the bottom rows of the terminal under the command's own output.

Technique: a scroll region (DECSTBM) keeps the command's output scrolling in the rows above the panel; each
redraw is one write() that saves the cursor (DECSC), draws the panel rows and restores the cursor (DECRC), so
the command's cursor position and colours are untouched, and the kernel's tty write lock keeps one write()
from being split by the command's writes. carbonwrap never sees the command's output (it never sits between
the command and the terminal), so it cannot detect a switch to the alternate screen: known full-screen
programs turn the panel off by name, and --no-live is documented for the others.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

from carbonwrap.report.text import format_energy, format_mass

FULL_SCREEN = frozenset(
    {
        "vi",
        "vim",
        "nvim",
        "view",
        "vimdiff",
        "emacs",
        "nano",
        "pico",
        "micro",
        "less",
        "more",
        "most",
        "man",
        "top",
        "htop",
        "btop",
        "atop",
        "iftop",
        "iotop",
        "nvtop",
        "watch",
        "mc",
        "ranger",
        "tmux",
        "screen",
    }
)
ROWS = 4
MIN_ROWS, MIN_COLS = 10, 40
MIN_REDRAW_S = 0.25  # at most 4 redraws a second
BLOCKS = "▁▂▃▄▅▆▇█"
ESC = "\x1b"


def full_screen(command: tuple[str, ...]) -> bool:
    return os.path.basename(command[0]) in FULL_SCREEN if command else False


def usable_terminal(fd: int = 2, environ: dict[str, str] | None = None) -> bool:
    """A panel only where it can be seen and cannot stop us: a sized terminal, not TERM=dumb, and carbonwrap in
    the terminal's foreground process group (a background job writing to it would be stopped by SIGTTOU)."""
    env = os.environ if environ is None else environ
    if env.get("TERM", "") in ("", "dumb"):
        return False
    try:
        size = os.get_terminal_size(fd)
        return size.lines > 0 and size.columns > 0 and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def sparkline(values: list[float], width: int) -> str:
    if not values:
        return ""
    values = values[-width:]
    top = max(values)
    if top <= 0:
        return BLOCKS[0] * len(values)
    return "".join(BLOCKS[min(len(BLOCKS) - 1, int(v / top * (len(BLOCKS) - 1) + 0.5))] for v in values)


class LivePanel:
    """Draws on `fd` (stderr, a terminal). `start` before the launch, `update` per sample, `stop` always."""

    def __init__(
        self,
        label: str,
        region: str,
        estimated: set[str],
        *,
        fd: int = 2,
        color: bool = True,
        size: Callable[[], os.terminal_size] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.region, self.estimated = label, region, estimated
        self.fd, self.color, self.clock = fd, color, clock
        self._size = size or (lambda: os.get_terminal_size(fd))
        self.rows = 0  # rows reserved now; 0 when not drawn
        self.height = 0
        self.width = 0
        self.power: dict[str, float] = {}  # charged to the command, per domain
        self.machine_w = 0.0  # the whole machine
        self.status = ""  # the current phase and the predicted total, when the command marks them
        self.energy_j = 0.0
        self.co2e_g = 0.0
        self.elapsed_s = 0.0
        self.history: deque[float] = deque(maxlen=60)  # total power, one value per second
        self._second = -1
        self._last_draw = -1.0
        self._t0 = clock()
        self.draws = 0
        self.dead = False  # the terminal went away (EIO after a hang-up): nothing is drawn again

    def _write(self, text: str) -> None:
        if self.dead:
            return
        data = text.encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            self.dead, self.rows = True, 0

    def _layout(self) -> str:
        size = self._size()
        self.height, self.width = size.lines, size.columns
        self.rows = ROWS if self.height >= MIN_ROWS and self.width >= MIN_COLS else 1
        n, bottom = self.rows, self.height - self.rows
        # IND (ESC D) moves down a line, scrolling at the bottom, and unlike a newline keeps the column of a
        # line the command has half written; then back up, and the region is set around the cursor (DECSTBM
        # homes the cursor, hence save and restore).
        return f"{ESC}D" * n + f"{ESC}[{n}A{ESC}7{ESC}[1;{bottom}r{ESC}8"

    def start(self) -> None:
        try:
            layout = self._layout()
        except OSError:  # no size: no panel
            self.dead = True
            return
        self._t0 = self.clock()
        self._write(layout + self._frame())

    def _clear(self) -> str:
        """Reset the scroll region and erase what lies below the cursor's line.

        The cursor is on the command's line and only blank rows or the panel are below it, wherever the
        terminal moved them on a resize (tmux pulls history back in when it grows), so erasing below the
        cursor is right where erasing the panel's old row numbers could hit the command's output.
        """
        return f"{ESC}7{ESC}[r{ESC}8{ESC}[1B{ESC}[J{ESC}8"

    def resize(self) -> None:
        if self.rows:
            try:
                layout = self._layout()
            except OSError:
                self.dead, self.rows = True, 0
                return
            self._write(self._clear() + layout + self._frame())

    def update(
        self, elapsed_s: float, power_w: dict[str, float], energy_j: float, co2e_g: float, machine_w: float = 0.0
    ) -> None:
        """A new sample: the command's charged power per domain, the machine's power, the totals so far."""
        self.elapsed_s, self.power, self.energy_j, self.co2e_g = elapsed_s, power_w, energy_j, co2e_g
        self.machine_w = machine_w
        second = int(elapsed_s)
        if second != self._second:
            self._second = second
            self.history.append(sum(power_w.values()))
        self._draw()

    def tick(self) -> None:
        """Redraw the clock between samples (a long --interval must not freeze it)."""
        self.elapsed_s = max(self.elapsed_s, self.clock() - self._t0)
        self._draw()

    def _draw(self) -> None:
        now = self.clock()
        if self.rows and now - self._last_draw >= MIN_REDRAW_S:
            self._last_draw = now
            self._write(self._frame())
            self.draws += 1

    def stop(self) -> None:
        """Give the rows back: reset the scroll region and clear the panel; the cursor stays with the output.

        Never raises: a terminal that went away must not cost the record."""
        if self.rows:
            self._write(self._clear())
            self.rows = 0

    def lines(self) -> list[str]:
        m, s = divmod(int(self.elapsed_s), 60)
        h, m = divmod(m, 60)
        clock = f"{h:d}:{m:02d}:{s:02d}"
        charged = "  ".join(
            f"{d} {w:.1f} W" + (" estimated" if d in self.estimated else "") for d, w in sorted(self.power.items())
        )
        domains = f"command {charged}  (machine {self.machine_w:.1f} W)" if charged else "waiting for the first sample"
        tag = " estimated" if self.estimated else ""
        energy, co2 = format_energy(self.energy_j, short=True), format_mass(self.co2e_g)
        totals = f"energy {energy}{tag}  CO2e {co2}{tag}  {self.region}"
        status = f"  {self.status}" if self.status else ""
        if self.rows == 1:
            return [f"carbonwrap {clock}{status}  {domains}  {totals}"]
        spark = sparkline(list(self.history), max(10, min(60, self.width - 24)))
        return [
            f"── carbonwrap: {self.label} ── {clock}{status} ",
            f" power  {domains}",
            f" {totals}",
            f" last minute {spark}",
        ]

    def _frame(self) -> str:
        if not self.rows:
            return ""
        out = [f"{ESC}7"]
        top = self.height - self.rows + 1
        for i, line in enumerate(self.lines()[: self.rows]):
            text = line[: self.width - 1]
            if i == 0 and self.rows > 1:
                text = text + "─" * max(0, self.width - 1 - len(text))
            style = (f"{ESC}[7m" if i == 0 else f"{ESC}[2m") if self.color else ""
            reset = f"{ESC}[0m" if self.color else ""
            out.append(f"{ESC}[{top + i};1H{ESC}[2K{style}{text}{reset}")
        out.append(f"{ESC}8")
        return "".join(out)
