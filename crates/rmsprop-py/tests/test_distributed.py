"""PyTorch's ZeroRedundancyOptimizer around ``rmsprop.torch.RMSprop``: two processes (gloo
on the loopback), each holding half the optimizer state and half the batch under
DistributedDataParallel, train to the parameters one process reaches on the whole batch,
within float32 rounding (the gradients are averaged across processes in another order)."""

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import rmsprop.torch as ours

STEPS = 20


def model_and_data():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return model, torch.randn(64, 5), torch.randn(64, 1)


def train(model, opt, x, y):
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model, x, y = model_and_data()
        ddp = DistributedDataParallel(model)
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=ours.RMSprop, lr=0.01, momentum=0.9, centered=True)
        half = x.shape[0] // world
        train(ddp, opt, x[rank * half : (rank + 1) * half], y[rank * half : (rank + 1) * half])
        if rank == 0:
            torch.save([p.detach() for p in model.parameters()], out)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zero_redundancy_optimizer_on_two_processes_trains_as_one():
    model, x, y = model_and_data()
    train(model, ours.RMSprop(model.parameters(), lr=0.01, momentum=0.9, centered=True), x, y)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "params.pt")
        mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
        spread = torch.load(out)
    start = model_and_data()[0]
    moved = max(float((p.detach() - s.detach()).abs().max()) for p, s in zip(model.parameters(), start.parameters()))
    assert moved > 1e-2, "training did not move the parameters: the comparison would be empty"
    for p, q in zip(model.parameters(), spread):
        torch.testing.assert_close(q, p.detach(), rtol=1e-5, atol=1e-6)
