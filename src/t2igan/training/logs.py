"""Run logs: a JSON-lines file always, TensorBoard when the package is installed, and progress lines."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunLogger", "Progress", "log_long_captions"]

log = logging.getLogger("t2igan.training")


def log_long_captions(*datasets) -> None:
    """Log, for each dataset (a ``TextImageDataset``), how many of its captions are longer than ``words_num``."""
    for ds in datasets:
        if note := ds.long_caption_note():
            log.info("%s", note)


class RunLogger:
    """Scalars to ``log.jsonl`` (one object per call) and TensorBoard (``tb/``); images to TensorBoard."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._file = open(self.run_dir / "log.jsonl", "a", encoding="utf-8") if enabled else None  # noqa: SIM115
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # tensorboard not installed: JSON lines only
                log.info("tensorboard is not installed; logging to %s only", self.run_dir / "log.jsonl")

    def scalars(self, step: int, values: dict[str, float], **extra: Any) -> None:
        if not self.enabled:
            return
        rec = {"step": step, "time": round(time.time(), 3), **extra,
               **{k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in values.items()}}
        assert self._file is not None
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, float(v), step)

    def image(self, tag: str, image: Any, step: int) -> None:
        if self._tb is not None:
            arr = np.asarray(image)
            self._tb.add_image(tag, arr, step, dataformats="HWC")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Progress:
    """A tqdm bar on a terminal; elsewhere a plain line every ``interval`` seconds (step, rate, ETA, stats).

    ``deadline`` (a ``time.monotonic()`` value, e.g. from a ``--minutes`` budget) caps the ETA of the plain lines:
    a run stopped by its time budget says when it will stop, not when all its epochs would end.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, interval: float = 30.0,
                 initial: int = 0, deadline: float | None = None) -> None:
        self.total, self.desc, self.enabled, self.interval = total, desc, enabled, interval
        self.deadline = deadline
        self.n = initial
        self._start_n = initial
        self._t0 = self._last = time.monotonic()
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def update(self, n: int = 1, **stats: float) -> None:
        self.n += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            if stats:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self.interval or self.n >= self.total:
            self._last = now
            rate = (self.n - self._start_n) / max(now - self._t0, 1e-9)
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            if self.deadline is not None:
                eta = max(0.0, min(eta, self.deadline - now))
            s = " ".join(f"{k}={v:.4g}" for k, v in stats.items())
            print(f"{self.desc}: {self.n}/{self.total} ({rate:.2f}/s, ETA {_fmt(eta)}) {s}".rstrip(),
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
