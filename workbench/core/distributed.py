"""Data-parallel training under torchrun: process group, averaging and synchronized BatchNorm.

Every process keeps a full copy of both networks and trains on its own shard
of each global batch. The networks are not wrapped in DistributedDataParallel.
After each backward pass the trainer calls :func:`average_gradients`, which
averages the parameter gradients of one network with a single all-reduce.
Because every loss is a mean over the local batch and all local batches have
the same size, the average equals the gradient of one process on the whole
global batch. That includes the gradient penalty, whose double backward runs
locally before the averaging, so it needs no support from a wrapper.

BatchNorm layers become :class:`SyncBatchNorm` when more than one process
trains, so that their batch statistics are those of the global batch.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

# Variables that torchrun sets for each worker process.
REQUIRED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Position of this process in a torchrun launch.

    Attributes
    ----------
    rank : int
        Index of this process among all processes, 0 to ``world_size - 1``.
    world_size : int
        Number of processes over all nodes.
    local_rank : int
        Index of this process on its node; it picks the GPU ``cuda:local_rank``.
    local_world_size : int
        Number of processes on this node.
    """

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def context_from_env(environ: Mapping[str, str] | None = None) -> DistributedContext | None:
    """Read torchrun's variables, or return None outside torchrun or when it starts one process.

    Raises
    ------
    ConfigError
        When WORLD_SIZE is above 1 but another variable is missing or invalid.
    """
    environ = os.environ if environ is None else environ
    if int(_env_int(environ, "WORLD_SIZE", default=1)) <= 1:
        return None
    missing = [name for name in REQUIRED_ENV if not environ.get(name)]
    if missing:
        raise ConfigError("WORLD_SIZE", f"WORLD_SIZE is {environ['WORLD_SIZE']} but {', '.join(missing)} "
                                        "not set; launch with torchrun, which sets them all")
    world_size = _env_int(environ, "WORLD_SIZE")
    rank = _env_int(environ, "RANK")
    local_rank = _env_int(environ, "LOCAL_RANK")
    local_world_size = _env_int(environ, "LOCAL_WORLD_SIZE", default=world_size)
    if not 0 <= rank < world_size:
        raise ConfigError("RANK", f"must be in [0, {world_size - 1}] for WORLD_SIZE {world_size}, got {rank}")
    if not 0 <= local_rank < local_world_size:
        raise ConfigError("LOCAL_RANK", f"must be in [0, {local_world_size - 1}] for LOCAL_WORLD_SIZE "
                                        f"{local_world_size}, got {local_rank}")
    return DistributedContext(rank, world_size, local_rank, local_world_size)


def _env_int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(name, f"environment variable {name} must be a whole number, got {text!r}") from None


def select_device(device: str, local_rank: int, local_world_size: int | None = None) -> torch.device:
    """Return the device of the process with ``local_rank`` in a run of several processes.

    ``auto`` and ``cuda`` give ``cuda:local_rank`` when CUDA is available, and
    ``auto`` falls back to the CPU otherwise. Apple MPS has no collective
    operations in torch.distributed, so it is rejected.

    Raises
    ------
    ConfigError
        For ``mps``, for ``cuda`` without CUDA, and when the node has fewer GPUs
        than processes (``local_world_size``, or ``local_rank + 1`` when not given).
    """
    if device == "mps":
        raise ConfigError("device", "'mps' cannot train on several processes, because torch.distributed "
                                    "has no collective operations on Apple MPS; use cpu or one process")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device", "'cuda' requested but CUDA is not available on this machine; use auto or cpu")
    needed = local_rank + 1 if local_world_size is None else local_world_size
    available = torch.cuda.device_count()
    if available < needed:
        raise ConfigError("device", f"{needed} processes on this node need {needed} GPUs but "
                                    f"{available} are visible; start at most {available} processes per "
                                    "node (torchrun --nproc_per_node) or use --device cpu")
    return torch.device("cuda", local_rank)


def init_process_group(context: DistributedContext, device: torch.device,
                       timeout: datetime.timedelta | None = None) -> str:
    """Join the process group from torchrun's variables: NCCL for CUDA, Gloo for the CPU.

    Returns the backend name. Does nothing but return it when the group exists already.
    """
    # NOTE: the tests run Gloo on the CPU only. The NCCL branch sets each process's GPU
    # before joining, but no test has run it.
    backend = "nccl" if device.type == "cuda" else "gloo"
    if dist.is_initialized():
        return dist.get_backend()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    options = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend, init_method="env://", rank=context.rank,
                            world_size=context.world_size, **options)
    logger.debug("process %d of %d joined the %s process group", context.rank, context.world_size, backend)
    return backend


def init_from_env(device: str) -> DistributedContext | None:
    """Join the process group that torchrun's variables describe, or return None for one process.

    ``device`` is the configured device setting. Its checks run before the
    group is joined, so invalid settings fail on every process before any work.
    """
    context = context_from_env()
    if context is None:
        return None
    selected = select_device(device, context.local_rank, context.local_world_size)
    init_process_group(context, selected)
    return context


def destroy_process_group() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_process_group(rank: int, world_size: int) -> None:
    """Raise ConfigError unless the process group matches ``rank`` and ``world_size``."""
    if world_size == 1:
        return
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("world_size", f"{world_size} processes requested but torch.distributed is not "
                                        "initialized; launch with torchrun or call init_process_group first")
    if dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise ConfigError("world_size", f"rank {rank} of {world_size} requested but the process group has "
                                        f"rank {dist.get_rank()} of {dist.get_world_size()}")


# ----- agreement between processes ------------------------------------------------


def call_on_all(function: Callable[[], None], world_size: int) -> None:
    """Call ``function`` on every process, and raise on all of them if it raises on any.

    Without this, a process that fails alone during set-up would leave the
    others waiting in their first collective operation. The failing process
    raises its own exception. The others raise a ConfigError with the same field
    and message when that was a ConfigError, and a RuntimeError otherwise.
    """
    if world_size == 1:
        function()
        return
    failure = None
    try:
        function()
    except Exception as error:  # every process must reach the all_gather below
        failure = error
    summary = None if failure is None else _summarize(failure)
    summaries: list = [None] * world_size
    dist.all_gather_object(summaries, summary)
    if failure is not None:
        raise failure
    for rank, item in enumerate(summaries):
        if item is not None:
            _raise_for_other_rank(rank, *item)


def _summarize(error: Exception) -> tuple[str, str | None, str]:
    if isinstance(error, ConfigError):
        return ("ConfigError", error.field, error.detail)
    return (type(error).__name__, None, str(error))


def _raise_for_other_rank(rank: int, kind: str, field: str | None, message: str) -> None:
    if kind == "ConfigError":
        raise ConfigError(field, f"{message} (reported by process {rank})")
    raise RuntimeError(f"process {rank} failed during set-up with {kind}: {message}")


def any_process(flag: bool, device: torch.device) -> bool:
    """Return True on every process when ``flag`` is True on at least one of them."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


# ----- averaging -------------------------------------------------------------------


def average_tensor(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Return the element-wise mean of ``tensor`` over all processes (``tensor`` itself for one)."""
    if world_size == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total.div_(world_size)


def average_gradients(module: nn.Module, world_size: int) -> None:
    """Replace each parameter gradient of ``module`` by its mean over all processes.

    The gradients are copied into one flat buffer, so the whole module costs a
    single all-reduce. Parameters without a gradient are skipped. Every process
    runs the same graph, so the same ones are skipped everywhere.
    """
    if world_size == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([grad.reshape(-1) for grad in grads])
    dist.all_reduce(flat)
    flat.div_(world_size)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


# ----- BatchNorm over the global batch ------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward pass sums the incoming gradients over processes.

    With gradients averaged after the backward pass, this is the exact gradient
    of the mean loss of all processes. It is written here because
    ``torch.distributed.nn.functional.all_reduce`` is deprecated in torch 2.14.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        total = grad_output.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the batch over all processes.

    torch's own ``nn.SyncBatchNorm`` rejects CPU tensors (torch 2.14), so Gloo
    runs could not use it. This layer works on any device. It computes the mean
    and then the variance with two differentiable all-reduces (two passes, so
    no cancellation), and takes the running statistics from the global
    batch, which keeps them identical on every process. It accepts
    (N, C, ...) input like BatchNorm1d and BatchNorm2d and has the same
    state_dict keys, so checkpoints move freely between it and them. In eval
    mode, and in a single process, it behaves as plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected input of shape (N, C, ...), got {tuple(input.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        synced = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(x)
        mean, var, count = self._global_moments(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        return y

    def _global_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Return the mean and biased variance per channel over all processes, and the count."""
        dims = [0, *range(2, x.dim())]
        local_count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), local_count]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        shape = (1, -1) + (1,) * (x.dim() - 2)
        var = _AllReduceSum.apply((x - mean.view(shape)).pow(2).sum(dims)) / count
        return mean, var, float(count)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1.0 - factor).add_(unbiased, alpha=factor)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer inside ``module`` by a SyncBatchNorm sharing its tensors.

    The new layers take over the parameters and buffers themselves, not
    copies, so optimizers built before or after the conversion see the same
    tensors. Returns ``module`` (or the replacement when it is a BatchNorm itself).
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        return _to_sync(module)
    for name, child in module.named_children():
        converted = convert_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _to_sync(layer: nn.modules.batchnorm._BatchNorm) -> SyncBatchNorm:
    synced = SyncBatchNorm(layer.num_features, layer.eps, layer.momentum, layer.affine,
                           layer.track_running_stats, device=None, dtype=None)
    if layer.affine:
        synced.weight, synced.bias = layer.weight, layer.bias
    if layer.track_running_stats:
        synced.running_mean, synced.running_var = layer.running_mean, layer.running_var
        synced.num_batches_tracked = layer.num_batches_tracked
    synced.train(layer.training)
    return synced
