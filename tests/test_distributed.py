"""Scale-out: vid3d models train under DistributedDataParallel. Two gloo processes on the CPU,
each on half of every batch, must compute the gradients (DDP's average) and the parameters of
one process on the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import _distributed_worker as job
from _helpers import TOLERANCE, one_intra_op_thread, rel_err

WORLD_SIZE = 2
BATCH = 4

one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed without gloo")
@pytest.mark.parametrize("name", ["vid3d.nn", "shufflenetv2", "mobilenetv2"])
def test_ddp_on_two_processes_matches_one_process(name, tmp_path):
    result_file = tmp_path / "rank0.pt"
    mp.spawn(job.worker, args=(WORLD_SIZE, name, BATCH, str(tmp_path / "init"), str(result_file)),
             nprocs=WORLD_SIZE, join=True)
    distributed = torch.load(result_file, weights_only=True)
    single = job.train(job.build(name), job.batches(BATCH))
    assert len(distributed) == len(single) == job.STEPS + 1
    for step, (got, expected) in enumerate(zip(distributed, single)):
        assert got.keys() == expected.keys()
        for key in expected:
            what = f"{'parameter' if step == job.STEPS else f'step {step} gradient'} {key}"
            assert rel_err(got[key], expected[key]) <= TOLERANCE[torch.float64], what
