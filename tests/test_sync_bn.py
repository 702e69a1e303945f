"""Synchronised batch norm: 2 gloo ranks against one process on the whole batch, and the layer conversions."""

from __future__ import annotations

import copy
import os
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from t2igan.training.sync_bn import DistBatchNorm2d, convert_sync_batchnorm, revert_batchnorm

GLOBAL_BATCH = 8
WORLD = 2
DDP_STEPS = 3
# name -> (dtype, per-rank batch sizes, synchronised batch norm?)
CASES: dict[str, tuple[torch.dtype, tuple[int, int], bool]] = {
    "f64_equal": (torch.float64, (4, 4), True),
    "f64_unequal": (torch.float64, (3, 5), True),
    "f32_unequal": (torch.float32, (3, 5), True),
    "plain_bn_per_rank": (torch.float64, (4, 4), False),
}


def _make_net(dtype: torch.dtype = torch.float64, momentum: float | None = 0.1) -> nn.Sequential:
    """conv -> BN (affine) -> relu -> conv -> BN (affine=False); the same values in every process."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=momentum), nn.ReLU(),
                        nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5, affine=False, momentum=momentum))
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
        net[1].weight.add_(1.0)
        for bn in (net[1], net[4]):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return net.to(dtype)


def _data(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Global input batch (channel means far from 0) and fixed loss weights for the output."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(GLOBAL_BATCH, 3, 6, 6, generator=g, dtype=torch.float64) * 2 + torch.tensor([3.0, -1.0, 5.0],
                                                                                               dtype=torch.float64)[:, None, None]
    w = torch.randn(GLOBAL_BATCH, 5, 6, 6, generator=g, dtype=torch.float64) / 10
    return x.to(dtype), w.to(dtype)


def _bounds(sizes: tuple[int, ...], rank: int) -> tuple[int, int]:
    lo = sum(sizes[:rank])
    return lo, lo + sizes[rank]


def _one_step(net: nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict[str, Any]:
    x = x.clone().requires_grad_()
    out = net(x)
    (out * w).sum().backward()
    return {"out": out.detach(), "x_grad": x.grad,
            "grads": {n: p.grad.clone() for n, p in net.named_parameters()},
            "state": {k: v.clone() for k, v in net.state_dict().items()}}


# -- worker (runs in each of the 2 spawned processes) ---------------------------------------------------------------


def _worker_cases(rank: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for name, (dtype, sizes, sync) in CASES.items():
        net = _make_net(dtype)
        if sync:
            net = convert_sync_batchnorm(net, "cpu")
            assert type(net[1]) is DistBatchNorm2d and type(net[4]) is DistBatchNorm2d
        x, w = _data(dtype)
        lo, hi = _bounds(sizes, rank)
        r = _one_step(net, x[lo:hi], w[lo:hi])
        for g in r["grads"].values():
            dist.all_reduce(g)  # sum of the ranks' gradients = gradient of the summed loss
        res[name] = r
    return res


def _worker_ddp(rank: int) -> dict[str, Any]:
    """DDP training with momentum=None (cumulative running stats), then eval on rank 0 alone."""
    net = convert_sync_batchnorm(_make_net(torch.float64, momentum=None), "cpu")
    ddp = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    lo, hi = _bounds((3, 5), rank)
    for step in range(DDP_STEPS):
        x, w = _data(torch.float64, seed=100 + step)
        opt.zero_grad()
        (ddp(x[lo:hi]) * w[lo:hi]).sum().backward()
        opt.step()
    res: dict[str, Any] = {"state": {k: v.clone() for k, v in net.state_dict().items()}}
    dist.barrier()
    if rank == 0:  # no collectives in eval mode: rank 1 is not running this forward
        net.eval()
        with torch.no_grad():
            res["eval_out"] = net(_data(torch.float64, seed=7)[0])
    dist.barrier()
    return res


def _worker(rank: int, port: int, out_dir: str) -> None:
    try:
        torch.set_num_threads(1)
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
        try:
            res = {"cases": _worker_cases(rank), "ddp": _worker_ddp(rank)}
        finally:
            dist.destroy_process_group()
        torch.save(res, Path(out_dir) / f"rank{rank}.pt")
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dist_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out_dir = tmp_path_factory.mktemp("sync_bn")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, str(out_dir)), daemon=True) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 150
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join(5)
    errors = "\n".join(f.read_text()[-3000:] for f in sorted(out_dir.glob("*.err")))
    assert not hung, f"worker(s) still running after 150 s (hang?)\n{errors}"
    assert all(p.exitcode == 0 for p in procs), f"exit codes {[p.exitcode for p in procs]}\n{errors}"
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    return (a.double() - b.double()).abs().max().item()


# -- 2 ranks against one process ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c, (_, _, sync) in CASES.items() if sync])
def test_two_ranks_match_single_process(dist_results: list[dict[str, Any]], case: str) -> None:
    dtype, sizes, _ = CASES[case]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    x, w = _data(dtype)
    ref = _one_step(_make_net(dtype), x, w)
    ranks = [res["cases"][case] for res in dist_results]
    assert [r["out"].shape[0] for r in ranks] == list(sizes)
    assert _max_diff(torch.cat([r["out"] for r in ranks]), ref["out"]) <= tol
    assert _max_diff(torch.cat([r["x_grad"] for r in ranks]), ref["x_grad"]) <= tol
    for r in ranks:  # gradients were summed over ranks: the same on both
        assert r["grads"].keys() == ref["grads"].keys()
        for n, g in ref["grads"].items():
            assert _max_diff(r["grads"][n], g) <= tol, n
        assert r["state"].keys() == ref["state"].keys()
        for k, v in ref["state"].items():
            if k.endswith("num_batches_tracked"):
                assert r["state"][k].item() == v.item() == 1
            else:
                assert _max_diff(r["state"][k], v) <= tol, k
    # the running statistics really moved (momentum 0.1 towards the global batch statistics)
    assert _max_diff(ref["state"]["1.running_mean"], _make_net(dtype).state_dict()["1.running_mean"]) > 1e-2


def test_plain_batchnorm_per_rank_does_not_match(dist_results: list[dict[str, Any]]) -> None:
    """The negative control: without synchronisation gradients and running stats differ clearly."""
    dtype, _, _ = CASES["plain_bn_per_rank"]
    x, w = _data(dtype)
    ref = _one_step(_make_net(dtype), x, w)
    r = dist_results[0]["cases"]["plain_bn_per_rank"]
    assert max(_max_diff(r["grads"][n], g) for n, g in ref["grads"].items()) > 1e-3
    assert _max_diff(torch.cat([res["cases"]["plain_bn_per_rank"]["x_grad"] for res in dist_results]),
                     ref["x_grad"]) > 1e-3
    assert _max_diff(r["state"]["4.running_var"], ref["state"]["4.running_var"]) > 1e-3


def test_ddp_training_with_cumulative_momentum_matches(dist_results: list[dict[str, Any]]) -> None:
    net = _make_net(torch.float64, momentum=None)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(DDP_STEPS):
        x, w = _data(torch.float64, seed=100 + step)
        opt.zero_grad()
        ((net(x) * w).sum() / WORLD).backward()  # DDP averages the ranks' gradients
        opt.step()
    ref_state = net.state_dict()
    for res in dist_results:
        state = res["ddp"]["state"]
        assert state.keys() == ref_state.keys()
        for k, v in ref_state.items():
            if k.endswith("num_batches_tracked"):
                assert state[k].item() == v.item() == DDP_STEPS
            else:
                assert _max_diff(state[k], v) <= 1e-10, k
    net.eval()
    with torch.no_grad():
        ref_eval = net(_data(torch.float64, seed=7)[0])
    assert _max_diff(dist_results[0]["ddp"]["eval_out"], ref_eval) <= 1e-10
    assert "eval_out" not in dist_results[1]["ddp"]


# -- one process: exactly nn.BatchNorm2d ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
                                    {"affine": True, "bias": False, "eps": 1e-3, "momentum": 0.3}])
def test_single_process_equals_batchnorm(kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3, **kwargs)
    if ref.weight is not None:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
    ours = DistBatchNorm2d(3, **kwargs)
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    for mode in ("train", "train", "eval", "train"):
        ref.train(mode == "train")
        ours.train(mode == "train")
        x = torch.randn(4, 3, 5, 5) * 3 + 1
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ref(xa), ours(xb)
        assert torch.equal(ya, yb)
        (ya * x).sum().backward()
        (yb * x).sum().backward()
        assert torch.equal(xa.grad, xb.grad)
        for (ka, a), (kb, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
            assert ka == kb and torch.equal(a, b), ka
        for pa, pb in zip(ref.parameters(), ours.parameters()):
            assert torch.equal(pa.grad, pb.grad)
    if kwargs.get("track_running_stats", True):
        assert ours.num_batches_tracked.item() == 3


def test_world_size_one_group_is_plain_batchnorm() -> None:
    assert not dist.is_initialized()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(1)
        ref, ours = nn.BatchNorm2d(3, momentum=None), DistBatchNorm2d(3, momentum=None)
        x = torch.randn(2, 3, 4, 4)
        assert torch.equal(ref(x), ours(x))
        assert torch.equal(ref.running_var, ours.running_var)
    finally:
        dist.destroy_process_group()


def test_input_must_be_4d() -> None:
    with pytest.raises(ValueError, match="4D"):
        DistBatchNorm2d(3)(torch.randn(2, 3, 4))


# -- conversions ----------------------------------------------------------------------------------------------------


class _SubBN(nn.BatchNorm2d):
    """A subclass: not an exact nn.BatchNorm2d, left alone on CPU."""


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.bn1d = nn.BatchNorm1d(4)
        self.sub = _SubBN(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub(self.bn(self.conv(x)))
        return x + self.bn1d(x.mean(dim=(2, 3)))[:, :, None, None]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=None), nn.ReLU())
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.heads = nn.ModuleDict({"a": nn.BatchNorm2d(4, track_running_stats=False)})
        self.shared = self.stem[1]  # the same layer under a second name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.heads["a"](self.shared(x))


def _tensors(m: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(m.named_parameters(remove_duplicate=False)), **dict(m.named_buffers(remove_duplicate=False))}


def _trained_net() -> _Net:
    torch.manual_seed(3)
    net = _Net()
    net(torch.randn(4, 3, 5, 5))  # move the running stats off their initial values
    net.blocks[0].bn.eval()
    net.blocks[1].conv.weight.requires_grad_(False)
    return net


def _assert_same_tensors(before: dict[str, torch.Tensor], sd_before: dict[str, torch.Tensor], m: nn.Module) -> None:
    after = _tensors(m)
    assert after.keys() == before.keys()
    for k, t in before.items():
        assert after[k] is t, k
    sd = m.state_dict()
    assert list(sd) == list(sd_before)
    for k, v in sd_before.items():
        assert torch.equal(sd[k], v) and sd[k].data_ptr() == v.data_ptr(), k


def test_convert_on_cpu_and_revert() -> None:
    net = _trained_net()
    before, sd_before = _tensors(net), net.state_dict()
    ref = copy.deepcopy(net)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)

    out = convert_sync_batchnorm(net, torch.device("cpu"))
    assert out is net
    for bn in (net.stem[1], net.blocks[0].bn, net.blocks[1].bn, net.heads["a"]):
        assert type(bn) is DistBatchNorm2d
    assert net.shared is net.stem[1]
    assert net.stem[1].momentum is None and net.heads["a"].running_mean is None
    assert net.heads["a"].track_running_stats is False and net.blocks[0].bn.weight is None
    for b in net.blocks:
        assert type(b.bn1d) is nn.BatchNorm1d and type(b.sub) is _SubBN
    assert not net.blocks[0].bn.training and net.blocks[1].bn.training
    assert not net.blocks[1].conv.weight.requires_grad
    _assert_same_tensors(before, sd_before, net)
    assert all(a is b for a, b in zip(opt.param_groups[0]["params"], [p for p in net.parameters() if p.requires_grad]))
    layers = dict(net.named_modules())
    assert convert_sync_batchnorm(net, "cpu") is net  # already converted: nothing changes
    assert all(m is layers[k] for k, m in net.named_modules())

    back = revert_batchnorm(net)
    assert back is net
    for bn in (net.stem[1], net.blocks[0].bn, net.blocks[1].bn, net.heads["a"]):
        assert type(bn) is nn.BatchNorm2d
    assert net.shared is net.stem[1] and type(net.blocks[0].sub) is _SubBN
    assert not net.blocks[0].bn.training and net.blocks[1].bn.training
    _assert_same_tensors(before, sd_before, net)

    # no process group: the converted net computes exactly what the original computes (buffers updated alike)
    convert_sync_batchnorm(net, "cpu")
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(net(x), ref(x))
    sd, sd_ref = net.state_dict(), ref.state_dict()
    assert sd.keys() == sd_ref.keys() and all(torch.equal(sd[k], sd_ref[k]) for k in sd)
    assert net.stem[1].num_batches_tracked.item() == 4  # called twice per forward (stem and shared)


def test_convert_root_batchnorm() -> None:
    bn = nn.BatchNorm2d(3, affine=True)
    bn.eval()
    new = convert_sync_batchnorm(bn, "cpu")
    assert type(new) is DistBatchNorm2d and new is not bn and type(bn) is nn.BatchNorm2d
    assert new.weight is bn.weight and new.bias is bn.bias and new.running_var is bn.running_var
    assert new.num_batches_tracked is bn.num_batches_tracked and not new.training
    back = revert_batchnorm(new)
    assert type(back) is nn.BatchNorm2d and back.weight is bn.weight and not back.training
    assert list(back.state_dict()) == list(bn.state_dict())
    bn1d = nn.BatchNorm1d(3)
    assert convert_sync_batchnorm(bn1d, "cpu") is bn1d and revert_batchnorm(bn1d) is bn1d


def test_convert_for_cuda_uses_syncbatchnorm_and_reverts() -> None:
    """The conversion itself needs no GPU: SyncBatchNorm for every BatchNorm*d, reverted to the original kinds."""
    net = _trained_net()
    before, sd_before = _tensors(net), net.state_dict()
    out = convert_sync_batchnorm(net, "cuda")
    assert out is net
    for b in net.blocks:
        assert type(b.bn) is nn.SyncBatchNorm and type(b.bn1d) is nn.SyncBatchNorm and type(b.sub) is nn.SyncBatchNorm
    assert type(net.stem[1]) is nn.SyncBatchNorm and type(net.heads["a"]) is nn.SyncBatchNorm
    _assert_same_tensors(before, sd_before, net)
    revert_batchnorm(net)
    for b in net.blocks:
        assert type(b.bn) is nn.BatchNorm2d and type(b.bn1d) is nn.BatchNorm1d and type(b.sub) is _SubBN
    assert type(net.stem[1]) is nn.BatchNorm2d and type(net.heads["a"]) is nn.BatchNorm2d
    _assert_same_tensors(before, sd_before, net)
    # a SyncBatchNorm made elsewhere becomes a BatchNorm2d
    sync = nn.SyncBatchNorm(3)
    plain = revert_batchnorm(sync)
    assert type(plain) is nn.BatchNorm2d and plain.weight is sync.weight


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_convert_on_cuda_forward() -> None:
    torch.manual_seed(0)
    ref = _make_net(torch.float32).cuda()
    net = convert_sync_batchnorm(copy.deepcopy(ref), "cuda")
    assert type(net[1]) is nn.SyncBatchNorm and type(net[4]) is nn.SyncBatchNorm
    x = torch.randn(4, 3, 6, 6, device="cuda")
    torch.testing.assert_close(net(x), ref(x))  # no process group: plain batch norm
    torch.testing.assert_close(net.state_dict(), ref.state_dict())
