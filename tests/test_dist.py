"""Distributed helpers: no-ops in one process, and a real 2-process gloo group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from t2igan.utils import dist as d

ROOT = Path(__file__).resolve().parents[1]


def test_single_process_is_a_no_op():
    assert not d.is_distributed() and d.rank() == 0 and d.world_size() == 1 and d.is_main()
    t = torch.arange(5)
    assert d.all_gather_uneven(t) is t
    assert d.broadcast_object({"a": 1}) == {"a": 1}
    assert list(d.shard(7)) == list(range(7))
    assert list(d.shard(7, 1, 3)) == [1, 4]
    assert not d.init_from_env()


def test_two_gloo_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import json, sys, torch
        from t2igan.utils import dist as d
        assert d.init_from_env("cpu")
        r, w = d.rank(), d.world_size()
        local = torch.arange(r * 10, r * 10 + 2 + r)            # rank 0: 2 rows, rank 1: 3 rows
        gathered = d.all_gather_uneven(local)
        obj = d.broadcast_object({"from": r})
        mine = list(d.shard(7))
        d.barrier()
        with open(sys.argv[1] + f".{r}", "w") as f:
            json.dump({"gathered": gathered.tolist(), "obj": obj, "shard": mine, "world": w}, f)
        d.cleanup()
    """))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = tmp_path / "result"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(out)], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    res = [json.loads(Path(f"{out}.{k}").read_text()) for k in (0, 1)]
    for k in (0, 1):
        assert res[k]["world"] == 2
        assert res[k]["gathered"] == [0, 1, 10, 11, 12]
        assert res[k]["obj"] == {"from": 0}
    assert res[0]["shard"] == [0, 2, 4, 6] and res[1]["shard"] == [1, 3, 5]
