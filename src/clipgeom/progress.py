"""Progress lines for the long jobs: done / total, percent, rate and ETA, written to the job's log.

One helper for every job (embedding, the alpha sweep, conformity and KL matching at large N, merging shards,
the COCO download)::

    bar = Progress(total, "alpha sweep", unit="rows")   # stream: the job's log (clipgeom.scripting.log_stream)
    for block in blocks:
        ...
        bar.update(len(block))
    rate = bar.close()                                  # items per second over the whole run

Each line is complete (no carriage returns), so a log file reads top to bottom and ``tail -f`` shows the job
moving::

    2026-12-05 13:02:11 alpha sweep:  40%|########            | 2000/5000 rows [00:04<00:06, 466 rows/s]

Lines are throttled: the first and the last always, between them one when the job has advanced by ``step`` of
the total (5%) and ``min_interval`` seconds (2 s) have passed since the previous line, and one at least every
``max_interval`` seconds (60 s) while the job moves at all. :meth:`Progress.update` costs one clock read.
"""

from __future__ import annotations

import time


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover


def _count(n: float) -> str:
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


class Progress:
    """A throttled progress line with rate and ETA (see the module docstring).

    ``total``: the amount of work (None: unknown, then no percent or ETA); ``unit``: what is counted
    (``"B"`` shows bytes as kB/MB/GB); ``stream``: where the lines go (default: the job's log file when
    logging is set up, else stderr: :func:`clipgeom.scripting.log_stream`).
    """

    def __init__(
        self,
        total: float | None,
        desc: str,
        unit: str = "items",
        stream=None,
        *,
        step: float = 0.05,
        min_interval: float = 2.0,
        max_interval: float = 60.0,
        width: int = 20,
    ):
        if stream is None:
            from clipgeom.scripting import log_stream

            stream = log_stream()
        self.total = None if total is None else max(float(total), 0.0)
        self.desc, self.unit, self.stream = desc, unit, stream
        self.step, self.min_interval, self.max_interval, self.width = step, min_interval, max_interval, width
        self.n = 0.0
        self.t0 = self._last_t = time.perf_counter()
        self._last_n = 0.0
        self._closed = False
        self._write(self.t0)

    # ------------------------------------------------------------------ counting
    def update(self, k: float = 1) -> None:
        """Count ``k`` more units done; writes a line when one is due."""
        self.n += k
        if self.total and self.n >= self.total:
            return  # the line for the end is close()'s
        now = time.perf_counter()
        dt = now - self._last_t
        if dt < self.min_interval:
            return
        moved = self.n - self._last_n
        if self.total and moved < self.step * self.total and dt < self.max_interval:
            return
        if moved > 0 or dt >= self.max_interval:
            self._write(now)

    def iterate(self, iterable, size=len):
        """Yield from ``iterable``, counting ``size(item)`` units per item (e.g. rows per chunk)."""
        for item in iterable:
            yield item
            self.update(size(item))

    def close(self) -> float:
        """Write the final line (once) and return the mean rate in units per second."""
        now = time.perf_counter()
        if not self._closed:
            self._closed = True
            self._write(now, final=True)
        dt = now - self.t0
        return self.n / dt if dt > 0 else float("nan")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------------ formatting
    def line(self, now: float | None = None, final: bool = False) -> str:
        """The progress line as it would be written now (without the time stamp)."""
        now = time.perf_counter() if now is None else now
        elapsed = now - self.t0
        rate = self.n / elapsed if elapsed > 0 else float("nan")
        if self.unit == "B":
            done = _bytes(self.n) + (f"/{_bytes(self.total)}" if self.total is not None else "")
            speed = f"{_bytes(rate)}/s" if rate == rate else "? B/s"
        else:
            done = _count(self.n) + (f"/{_count(self.total)}" if self.total is not None else "") + f" {self.unit}"
            speed = (f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}") if rate == rate else "?"
            speed += f" {self.unit}/s"
        if self.total:
            frac = min(self.n / self.total, 1.0)
            fill = int(round(frac * self.width))
            bar = f"{100 * frac:3.0f}%|{'#' * fill}{' ' * (self.width - fill)}| "
            left = (self.total - self.n) / rate if rate and rate == rate and rate > 0 else float("nan")
            when = f"{_clock(elapsed)}<{_clock(max(left, 0.0))}" if not final else f"{_clock(elapsed)}"
        else:
            bar, when = "", _clock(elapsed)
        return f"{self.desc}: {bar}{done} [{when}, {speed}]" + (" done" if final else "")

    def _write(self, now: float, final: bool = False) -> None:
        self._last_t, self._last_n = now, self.n
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.stream.write(f"{stamp} {self.line(now, final)}\n")
            self.stream.flush()
        except (ValueError, OSError):  # a closed log stream must never stop the job
            pass
