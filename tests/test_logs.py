"""Run logs: progress lines (rate, ETA capped by a time budget) and the JSON-lines reader."""

from __future__ import annotations

import json
import time

from t2igan.training.logs import Progress, RunLogger
from t2igan.utils.io import log_series


def test_progress_eta_is_capped_by_the_deadline(capsys):
    p = Progress(1_000_000, "train", interval=0.0, deadline=time.monotonic() + 90)
    time.sleep(0.01)
    p.update(1)
    line = capsys.readouterr().err
    assert line.startswith("train: 1/1000000")
    eta = line.split("ETA ")[1].split(")")[0]
    assert eta in ("1:30", "1:29", "1:28")  # not the hours that 1e6 steps would take
    q = Progress(1_000_000, "train", interval=0.0)
    time.sleep(0.01)
    q.update(1)
    hours = capsys.readouterr().err.split("ETA ")[1].split(")")[0]
    assert hours.count(":") == 2  # h:mm:ss without a deadline


def test_logger_lines_read_back_as_series(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    log.scalars(1, {"d/loss": 1.5, "g/adv": float("nan")}, epoch=0)
    log.scalars(2, {"d/loss": 1.25})
    log.close()
    (tmp_path / "log.jsonl").open("a").write('{"step": 3, "d/lo')  # a line cut off by a kill
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["g/adv"] == "nan"  # non-finite values stay valid JSON
    series = log_series(tmp_path / "log.jsonl", lambda k: True)
    assert series == {"d/loss": [(1.0, 1.5), (2.0, 1.25)]}
    assert log_series(tmp_path / "missing.jsonl", lambda k: True) == {}
