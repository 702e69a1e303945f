"""Run directories and snapshots.

A run lives in a numbered directory (``runs/00003-damsm-synthbirds``) holding ``run_config.json``, the logs and
``snapshots/<tag>/``. A snapshot is written into a temporary directory and moved into place with
``os.replace``; the ``snapshots/latest`` pointer file is rewritten last, so a crash at any moment leaves the
previous complete snapshot as ``latest``. Only the newest ``keep`` snapshots are kept.

``trainer_state.pt`` files hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2igan.utils.io import write_json_atomic, write_text_atomic

log = logging.getLogger("t2igan.training")

__all__ = ["make_run_dir", "record_resume", "SnapshotManager", "capture_rng_state", "restore_rng_state",
           "save_trainer_state", "load_trainer_state", "ResumeError", "StopFlag"]

_RUN_RE = re.compile(r"^(\d{5})-")


class ResumeError(RuntimeError):
    """A run cannot be resumed; the message names the directory or file and what is wrong."""


def make_run_dir(root: str | os.PathLike[str], name: str) -> Path:
    """Create ``root/NNNNN-name`` with the next free number."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    while True:
        nums = [int(m.group(1)) for p in root.iterdir() if (m := _RUN_RE.match(p.name))]
        path = root / f"{max(nums, default=-1) + 1:05d}-{safe}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took the number; try the next
            continue


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (an empty section has no keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def record_resume(run_dir: str | os.PathLike[str], saved: dict[str, Any], config: dict[str, Any], *,
                  step: int) -> dict[str, list[Any]]:
    """Keep ``run_config.json`` the config the run trains with, and a history of what each resume changed.

    ``saved`` is the run's ``run_config.json`` before this resume and ``config`` the config it resumes with
    (overrides given at the resume included). Where they differ, ``run_config.json`` is rewritten to ``config``
    (so ``t2igan export`` and the next resume read what the newest steps were trained with) and a line
    ``{"step", "time", "changed": {"dotted.key": [before, after]}}`` is appended to ``resumes.jsonl``. Returns
    the changed keys (empty when nothing changed: nothing is written then).
    """
    run_dir = Path(run_dir)
    before, after = _flatten(saved), _flatten(config)
    changed = {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)}
    if changed:
        with open(run_dir / "resumes.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": int(step), "time": round(time.time(), 3), "changed": changed}) + "\n")
        write_json_atomic(run_dir / "run_config.json", config)
        log.info("resumed with %s changed: run_config.json now holds them (history: %s)",
                 ", ".join(f"{k}={v[1]!r}" for k, v in changed.items()), run_dir / "resumes.jsonl")
    return changed


class SnapshotManager:
    """Atomic snapshots under ``run_dir/snapshots`` with a ``latest`` pointer and retention."""

    def __init__(self, run_dir: str | os.PathLike[str], keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.dir = Path(run_dir) / "snapshots"
        self.keep = keep

    def save(self, tag: str, write: Callable[[Path], None]) -> Path:
        """Call ``write(tmp_dir)`` to fill a new snapshot, then publish it as ``tag`` and ``latest``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / tag
        tmp = self.dir / f".tmp-{tag}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            write(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            old = self.dir / f".old-{tag}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        write_text_atomic(self.dir / "latest", tag + "\n")
        self._prune(tag)
        return final

    def list(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        snaps = [p for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(snaps, key=lambda p: p.stat().st_mtime_ns)

    def latest(self) -> Path | None:
        pointer = self.dir / "latest"
        if not pointer.is_file():
            return None
        tag = pointer.read_text(encoding="utf-8").strip()
        path = self.dir / tag
        if not path.is_dir():
            raise ResumeError(f"{pointer} names snapshot {tag!r}, which does not exist in {self.dir}")
        return path

    def _prune(self, current: str) -> None:
        snaps = [p for p in self.list() if p.name != current]
        for p in snaps[: max(0, len(snaps) - (self.keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states in a weights_only-loadable form."""
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global state is what third-party code uses)
    state: dict[str, Any] = {
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[1], tuple(py[0]), py[2]))
    np_s = state["numpy"]
    np.random.set_state(("MT19937", np_s["keys"].numpy().astype(np.uint32), np_s["pos"],  # noqa: NPY002
                         np_s["has_gauss"], np_s["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_trainer_state(path: Path, state: dict[str, Any]) -> None:
    torch.save(state, path)


def load_trainer_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ResumeError(f"trainer state not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ResumeError(f"{path}: cannot read the trainer state (truncated or corrupt?): {exc}") from exc


class StopFlag:
    """Within ``with StopFlag() as flag``: SIGINT/SIGTERM set ``flag.stop`` (a second signal interrupts at once)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def _handler(self, signum, frame) -> None:
        if self.stop:  # a second signal: give up at once
            raise KeyboardInterrupt
        log.warning("signal %d: finishing this step, writing a snapshot, then stopping", signum)
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
