"""The ``t2igan`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "t2igan.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_help_lists_subcommands():
    r = run("--help")
    assert r.returncode == 0
    for name in ("prepare", "quickstart"):
        assert name in r.stdout


@pytest.mark.parametrize("sub", [["prepare"], ["prepare", "synthetic"], ["prepare", "cub"], ["prepare", "coco"],
                                 ["prepare", "flowers"], ["prepare", "folder"], ["quickstart"]])
def test_every_subcommand_has_help(sub):
    r = run(*sub, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: t2igan " + " ".join(sub) in r.stdout


def test_prepare_synthetic_then_check_it_as_cub(tmp_path):
    out = tmp_path / "sb"
    r = run("prepare", "synthetic", "--out", str(out), "--size", "32", "--train", "24", "--test", "8",
            "--seed", "5", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "24 train + 8 test" in r.stdout
    preview = Image.open(out / "preview.png")
    assert preview.width > 4 * 32
    # the same files read through the CUB code path
    r = run("prepare", "cub", "--root", str(out), "--json", "--verify")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["train_images"] == 24 and summary["test_images"] == 8
    assert summary["train_captions"] == 240
    assert summary["unreadable_images"] == 0


def test_prepare_reports_a_missing_dataset_clearly(tmp_path):
    r = run("prepare", "cub", "--root", str(tmp_path / "nowhere"))
    assert r.returncode == 2
    assert "nowhere" in r.stderr and "not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_prepare_refuses_to_overwrite_foreign_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    r = run("prepare", "synthetic", "--out", str(out), "--train", "4", "--test", "2", "--overwrite")
    assert r.returncode == 2
    assert "refusing" in r.stderr
    assert (out / "thesis.tex").read_text() == "precious"


def test_prepare_verify_counts_unreadable_images(tmp_path):
    out = tmp_path / "sb"
    assert run("prepare", "synthetic", "--out", str(out), "--size", "32", "--train", "6", "--test", "2",
               "--workers", "1").returncode == 0
    victim = next((out / "CUB_200_2011" / "images").rglob("*.jpg"))
    victim.write_bytes(b"not a jpeg at all")
    r = run("prepare", "cub", "--root", str(out), "--verify", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["unreadable_images"] == 1
    assert victim.name in r.stderr


def test_quickstart_small(tmp_path):
    r = run("quickstart", "--out", str(tmp_path / "qs"), "--train", "16", "--test", "8", "--size", "32",
            "--minutes", "0.65")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "qs" / "synthbirds_preview.png").is_file()
    assert (tmp_path / "qs" / "data" / "synthbirds" / "attributes.jsonl").is_file()
    assert "16 train images" in r.stdout
    run_dir = next((tmp_path / "qs" / "runs").glob("*-damsm-synthbirds"))
    assert (run_dir / "encoders" / "text_encoder" / "model.safetensors").is_file()
    assert "R-precision:" in r.stdout


def test_quickstart_refuses_a_budget_too_small(tmp_path):
    r = run("quickstart", "--out", str(tmp_path / "qs"), "--train", "8", "--test", "4", "--size", "32",
            "--minutes", "0.1")
    assert r.returncode == 2
    assert "--minutes" in r.stderr
