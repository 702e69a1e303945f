"""Device helpers: whether bf16 autocast is used (only where the device runs it natively) and what is said."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from t2igan.models.inference import check_precision
from t2igan.objectives.base import Networks
from t2igan.objectives.target_aware import TargetAwareObjective
from t2igan.training.trainer import StepRunner
from t2igan.utils import device as devmod
from t2igan.utils.device import native_bf16, resolve_amp


@pytest.fixture(params=[False, True], ids=["avx2-cpu", "bf16-cpu"])
def cpu_bf16(request, monkeypatch):
    monkeypatch.setattr(devmod, "_cpu_bf16", lambda: request.param)
    return request.param


def test_auto_is_bf16_only_where_native(cpu_bf16, caplog):
    assert native_bf16("cpu") is cpu_bf16
    with caplog.at_level(logging.INFO, logger="t2igan"):
        assert resolve_amp("auto", "cpu") == ("bf16" if cpu_bf16 else "off")
        assert resolve_amp(True, torch.device("cpu")) == ("bf16" if cpu_bf16 else "off")
    assert ("no native bf16" in caplog.text) is (not cpu_bf16)
    assert resolve_amp("off", "cpu") == resolve_amp(False, "cpu") == "off"


def test_explicit_bf16_is_kept_with_a_warning_where_slow(cpu_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="t2igan"):
        assert resolve_amp("bf16", "cpu", what="train.amp") == "bf16"
    assert ("train.amp=bf16" in caplog.text and "slower than fp32" in caplog.text) is (not cpu_bf16)


def test_inference_bf16_warns_where_slow(cpu_bf16, recwarn):
    assert check_precision("bf16", torch.device("cpu")) == "bf16"
    msgs = [str(w.message) for w in recwarn]
    assert any("no native bf16" in m for m in msgs) is (not cpu_bf16)
    check_precision("fp32", torch.device("cpu"))
    assert len(recwarn) == len(msgs)


def test_step_runner_resolves_auto(cpu_bf16):
    g, d = nn.Linear(2, 2), nn.Linear(2, 2)
    runner = StepRunner(TargetAwareObjective(), Networks(g, d, None, None), device=torch.device("cpu"), amp="auto")
    assert runner.amp == ("bf16" if cpu_bf16 else "off")


def test_the_probe_answers_on_this_machine():
    # the real probe (no monkeypatch): a bool, and consistent with the CPU's flags where Linux shows them
    got = devmod._cpu_bf16()
    assert isinstance(got, bool)
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if "avx512" not in flags:
        assert got is False
