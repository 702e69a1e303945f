"""Synchronised batch norm for multi-process (DDP) training, on CUDA/NCCL and on CPU/gloo.

Why: with plain ``nn.BatchNorm2d`` every rank normalises with the statistics of its own slice of the batch, so
forward, gradients and running statistics all differ from training on the whole batch in one process (the
generators of this toolkit normalise small per-rank batches, where that difference is large). PyTorch's
``nn.SyncBatchNorm`` fixes this on GPUs but refuses CPU tensors ("SyncBatchNorm expected input tensor to be on
GPU ..."), which rules out CPU/gloo runs under ``torchrun``.

:class:`DistBatchNorm2d` is an ``nn.BatchNorm2d`` (same constructor, parameters, buffers and ``state_dict``
keys) whose training-mode forward takes per-channel mean and biased variance over the *global* batch of all
ranks. Both statistics go through an all-reduce that is part of the autograd graph (its backward all-reduces the
incoming gradient), so forward and backward equal single-process batch norm over the concatenation of the
ranks' batches, also when ranks hold different numbers of samples. Two reductions are made: the per-channel
sums together with the element count (in float64, so the count stays exact), then the sums of squared deviations
from the global mean, which is numerically safer than ``E[x^2] - E[x]^2``. Running statistics are updated as
``nn.BatchNorm2d`` does (unbiased variance over the global count; ``momentum=None`` for a cumulative average
over ``num_batches_tracked``).

Like ``nn.SyncBatchNorm``, it synchronises only in training mode: in eval mode (also when no running statistics
are tracked, where the batch's own statistics are used) and without a process group of more than one rank it is
exactly ``nn.BatchNorm2d``, so sampling on one rank alone cannot wait forever on the others. In training mode
every rank of the group must run the same forward and backward passes, in the same order.

:func:`convert_sync_batchnorm` swaps the layers of a model in place (``nn.SyncBatchNorm`` on CUDA,
:class:`DistBatchNorm2d` elsewhere) keeping the very same parameter and buffer tensors, and
:func:`revert_batchnorm` swaps them back to plain batch norm, for exporting a trained model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistBatchNorm2d", "convert_sync_batchnorm", "revert_batchnorm"]

# Attribute set on the nn.SyncBatchNorm layers made by convert_sync_batchnorm: the batch-norm class they
# replaced, so that revert_batchnorm gives a BatchNorm1d back as a BatchNorm1d.
_ORIGINAL_CLS_ATTR = "_t2igan_bn_cls"


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum all-reduce: the backward all-reduces (sums) the incoming gradient.

    The same as ``torch.distributed.nn.functional.all_reduce(t, op=SUM)``, which recent PyTorch releases mark
    deprecated with a ``FutureWarning``; the replacement they name (functional collectives) has no autograd.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor,
                group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.group = group  # type: ignore[attr-defined]
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _AllReduceSum.apply(grad_output, ctx.group), None  # type: ignore[attr-defined]


def _all_reduce_sum(t: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    return _AllReduceSum.apply(t, group)


class DistBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode batch statistics span all ranks of a process group.

    Works with any backend, gloo on CPU included. Takes the arguments of ``nn.BatchNorm2d`` plus
    ``process_group`` (default: the whole world) and has the same parameters, buffers and ``state_dict``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        bias: bool = True,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        # ``bias`` is only passed when False: older PyTorch releases have no such argument.
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype,
                         **({} if bias else {"bias": False}))
        self.process_group = process_group

    def _sync_world_size(self) -> int:
        """Ranks to synchronise with: more than 1 only in training mode inside a process group."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if self._sync_world_size() <= 1:
            return super().forward(input)

        # Training mode in a group of several ranks. Momentum as in nn.BatchNorm2d.forward.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

        group = self.process_group
        compute_dtype = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
        x = input.to(compute_dtype)
        dims = (0, 2, 3)
        local_count = input.numel() // max(input.shape[1], 1)

        # 1) global per-channel sums and element count (float64: exact count, accurate mean)
        local_sum = x.sum(dim=dims, dtype=torch.float64)
        packed = torch.cat([local_sum, local_sum.new_full((1,), float(local_count))])
        packed = _all_reduce_sum(packed, group)
        count = int(packed[-1].item())
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {count} over all ranks "
                             f"(local input size {list(input.shape)})")
        mean = (packed[:-1] / count).to(compute_dtype)

        # 2) global per-channel sums of squared deviations from the global mean
        centered = x - mean[None, :, None, None]
        sq_sum = _all_reduce_sum(centered.square().sum(dim=dims), group)
        var = sq_sum / count  # biased: used to normalise
        out = centered * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.weight is not None:
            out = out * self.weight.to(compute_dtype)[None, :, None, None]
        if self.bias is not None:
            out = out + self.bias.to(compute_dtype)[None, :, None, None]

        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                unbiased = sq_sum / (count - 1)
                rm, rv = self.running_mean, self.running_var
                rm.copy_(mean.to(rm.dtype) * factor + rm * (1.0 - factor))
                rv.copy_(unbiased.to(rv.dtype) * factor + rv * (1.0 - factor))
        return out.to(input.dtype)


# -- conversion ---------------------------------------------------------------------------------------------------


def _swap_bn(old: nn.modules.batchnorm._BatchNorm, cls: type[nn.modules.batchnorm._BatchNorm],
             **kwargs: object) -> nn.modules.batchnorm._BatchNorm:
    """A ``cls`` layer holding the very same Parameter and buffer objects as ``old`` (no copies)."""
    if old.affine and old.bias is None:
        kwargs["bias"] = False
    new = cls(old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats,  # type: ignore[call-arg]
              device="meta", **kwargs)
    new._parameters.clear()
    new._parameters.update(old._parameters)
    new._buffers.clear()
    new._buffers.update(old._buffers)
    new._non_persistent_buffers_set = set(old._non_persistent_buffers_set)
    new.train(old.training)
    if hasattr(old, "qconfig"):
        new.qconfig = old.qconfig
    return new


def _replace_modules(module: nn.Module, convert: dict[int, nn.Module],
                     make: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Replace, depth first and in place, each module for which ``make(m)`` gives a new one.

    ``convert`` memoises by identity, so a layer shared by two parents becomes one shared new layer.
    """
    key = id(module)
    if key in convert:
        return convert[key]
    new = make(module)
    out = module if new is None else new
    convert[key] = out
    for name, child in list(out._modules.items()):
        if child is not None:
            out._modules[name] = _replace_modules(child, convert, make)
    return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str,
                           process_group: dist.ProcessGroup | None = None) -> nn.Module:
    """Make the batch-norm layers of ``module`` synchronise across ranks for a model running on ``device``.

    On CUDA: ``nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)`` (every ``BatchNorm*d``). On any
    other device (CPU/gloo): each layer of exact type ``nn.BatchNorm2d`` becomes a :class:`DistBatchNorm2d`
    holding the same Parameter and buffer objects and keeping its train/eval mode; other layers, including
    ``BatchNorm1d``/``3d`` and already converted ones, are left alone. Children are replaced in place; the
    returned module is ``module`` itself unless ``module`` is a batch-norm layer that was replaced. Optimizers
    and ``state_dict`` see the same tensors before and after.
    """
    if torch.device(device).type == "cuda":
        kinds = {name: type(m) for name, m in module.named_modules(remove_duplicate=False)
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)}
        out = nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
        for name, m in out.named_modules(remove_duplicate=False):
            if isinstance(m, nn.SyncBatchNorm) and name in kinds:
                setattr(m, _ORIGINAL_CLS_ATTR, kinds[name])
        return out

    def make(m: nn.Module) -> nn.Module | None:
        if type(m) is nn.BatchNorm2d:
            return _swap_bn(m, DistBatchNorm2d, process_group=process_group)
        return None

    return _replace_modules(module, {}, make)


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm`: plain batch norm sharing the same tensors, same ``state_dict``.

    :class:`DistBatchNorm2d` becomes ``nn.BatchNorm2d``; ``nn.SyncBatchNorm`` becomes the class it replaced when
    :func:`convert_sync_batchnorm` made it (e.g. ``nn.BatchNorm1d``), else ``nn.BatchNorm2d``. Children are
    replaced in place; the returned module is ``module`` unless ``module`` itself was replaced.
    """

    def make(m: nn.Module) -> nn.Module | None:
        if isinstance(m, DistBatchNorm2d):
            return _swap_bn(m, nn.BatchNorm2d)
        if isinstance(m, nn.SyncBatchNorm):
            return _swap_bn(m, getattr(m, _ORIGINAL_CLS_ATTR, nn.BatchNorm2d))
        return None

    return _replace_modules(module, {}, make)
