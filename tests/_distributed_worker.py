"""The models and the training steps of test_distributed.py, in a module of their own: the
worker processes that torch.multiprocessing spawns import it by name (pytest's importlib mode
makes test modules unimportable there)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

import vid3d
from vid3d import models

STEPS = 2
LEARNING_RATE = 0.1


def build(name: str) -> nn.Module:
    """A float64 model in training mode, the same on every process."""
    torch.manual_seed(0)
    if name == "vid3d.nn":
        model = nn.Sequential(
            nn.Conv3d(3, 8, 1),
            vid3d.nn.DepthwiseConv3d(8, 8, 3, padding=1, stride=(1, 2, 2)),
            nn.ReLU(),
            vid3d.nn.ChannelShuffle3d(2),
            vid3d.nn.Conv2Plus1d(8, 8, 3, padding=1, mid_activation="relu"),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )
    else:
        model = models.create(name, width_mult=0.25, num_classes=5, sample_size=32)
    model = model.double().train()
    # Each process sees half the batch: batch statistics and dropout masks would differ from one
    # process on the whole batch (SyncBatchNorm needs a GPU), so BatchNorm and Dropout run as in
    # evaluation, the way a fine-tuning run freezes them.
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()
    return model


def batches(batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 3, 4, 32, 32, dtype=torch.float64, generator=generator),
             torch.randint(0, 5, (batch,), generator=generator)) for _ in range(STEPS)]


def train(model: nn.Module, steps: list[tuple[torch.Tensor, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """SGD steps on a mean loss; the gradients of every step, then the parameters after the last."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    named = [(name.removeprefix("module."), p) for name, p in model.named_parameters()]
    history = []
    for x, target in steps:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        history.append({name: p.grad.clone() for name, p in named})
        optimizer.step()
    history.append({name: p.detach().clone() for name, p in named})
    return history


def worker(rank: int, world_size: int, name: str, batch: int, init_file: str, result_file: str) -> None:
    """One DDP process: trains on its slice of each batch and, on rank 0, saves what train returns.

    A finished process leaves with os._exit, running no destructors: tearing the DDP model down
    can deadlock in torch (seen with 2.13 in CI: the process group's destructor, run under the GIL
    when the reducer is freed, joins gloo's thread, which waits for the GIL to free a Python object
    of its thread-local state)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        model = nn.parallel.DistributedDataParallel(build(name))
        share = batch // world_size
        mine = [(x[rank * share:(rank + 1) * share], t[rank * share:(rank + 1) * share]) for x, t in batches(batch)]
        history = train(model, mine)
        if rank == 0:
            torch.save(history, result_file)
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.barrier()  # both processes are done with the group before either leaves
    os._exit(0)
