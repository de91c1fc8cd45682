#!/usr/bin/env python3
"""Records bitsandbytes' 8-bit and 32-bit RMSprop and Adam on the CPU into
``trajectories.json``: the parameters along a seeded noisy quadratic, for measuring how close
the core's 8-bit state (``state_storage=int8``) stays to bitsandbytes' ``RMSprop8bit`` and
``Adam8bit``, next to bitsandbytes' own distance between its 8-bit and 32-bit optimizers.

    python3 -m venv /tmp/bnb && /tmp/bnb/bin/pip install torch==2.15.0 bitsandbytes==0.50.2
    /tmp/bnb/bin/python testdata/bnb/record_optim.py    # rewrites testdata/bnb/trajectories.json

The problem, reproducible bit for bit anywhere (every value exact in float32):
``u(k)`` is the k-th output of SplitMix64 seeded with ``SEED``, mapped to ``(z >> 40) / 2^23 - 1``
(a float32 in [-1, 1)). The parameters start at ``x_i = u(i)``; the curvatures are
``a_i = 2^(i % 9 - 6)``; step ``t`` (1-based) takes the gradient ``g_i = a_i * x_i + NOISE *
u(N + (t - 1) * N + i)``, each product and the sum rounded to float32 (two operations).
Every number is written as the shortest decimal that reads back as the same binary64.
"""

import json
import pathlib

import bitsandbytes as bnb
import torch

SEED = 26
N = 4096  # bitsandbytes' min_8bit_size: the smallest tensor it keeps in 8 bits
STEPS = 100
RECORD = [1, 20, 100]
NOISE = 0.125
MASK = (1 << 64) - 1


def splitmix(seed, count):
    out, state = [], seed
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out.append((z >> 40) / (1 << 23) - 1.0)
    return torch.tensor(out, dtype=torch.float32)


def floats(t):
    return [float(v) for v in t.to(torch.float32).tolist()]


def run(make):
    u = splitmix(SEED, N + STEPS * N)
    x = torch.nn.Parameter(u[:N].clone())
    a = torch.tensor([2.0 ** (i % 9 - 6) for i in range(N)], dtype=torch.float32)
    opt = make([x])
    recorded = {}
    for t in range(1, STEPS + 1):
        noise = u[N + (t - 1) * N : N + t * N]
        x.grad = a * x.detach() + NOISE * noise
        opt.step()
        if t in RECORD:
            recorded[str(t)] = floats(x.detach())
    return recorded


def main():
    runs = {
        "rmsprop_8bit": lambda p: bnb.optim.RMSprop8bit(p, lr=1e-3, alpha=0.99, eps=1e-8),
        "rmsprop_32bit": lambda p: bnb.optim.RMSprop32bit(p, lr=1e-3, alpha=0.99, eps=1e-8),
        "adam_8bit": lambda p: bnb.optim.Adam8bit(p, lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
        "adam_32bit": lambda p: bnb.optim.Adam32bit(p, lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
    }
    out = {
        "format_version": 1,
        "framework": "bitsandbytes",
        "framework_version": bnb.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "problem": {"seed": SEED, "n": N, "steps": STEPS, "noise": NOISE, "recorded_steps": RECORD},
        "hyperparameters": {
            "rmsprop": {"lr": 1e-3, "alpha": 0.99, "eps": 1e-8},
            "adam": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8},
        },
        "runs": {name: run(make) for name, make in runs.items()},
    }
    path = pathlib.Path(__file__).with_name("trajectories.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{path}: {len(runs)} runs")


if __name__ == "__main__":
    main()
