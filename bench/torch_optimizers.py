#!/usr/bin/env python3
"""``rmsprop.torch`` against torch's and timm's optimizers, from Python, in one run.

Time per ``step()`` with the Python side included, on one tensor and on a ResNet-18's
parameter layout (62 tensors, 11.7M elements), at 1 and 2 threads (``torch.set_num_threads``
governs both sides). Each round times every contender once, back to back, and a ratio is
the contender's seconds over ours within a round, the median over the rounds: the machine
is shared and its bandwidth drifts, so times taken apart would measure the drift.

    pip install ./crates/rmsprop-py torch timm
    python3 bench/torch_optimizers.py                        # 1e7 and the ResNet-18 layout
    python3 bench/torch_optimizers.py --layouts 1e8 --no-compile
"""

import argparse
import statistics
import time

import torch

import rmsprop.torch as ours


def resnet18_shapes():
    """The parameter shapes of torchvision's resnet18 (convolutions, batch norms, fc)."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first_in = cin if block == 0 else cout
            shapes += [(cout, first_in, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
        cin = cout
    return shapes + [(1000, 512), (1000,)]


def layout(name):
    return resnet18_shapes() if name == "resnet18" else [(int(float(name)),)]


def make(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return ps


def contenders(shapes, compile_, timm_):
    """(name, step function) of each optimizer, each on its own parameters."""
    out = [("ours", ours.RMSprop(make(shapes), lr=1e-4, momentum=0.9).step)]
    out.append(("torch foreach", torch.optim.RMSprop(make(shapes), lr=1e-4, momentum=0.9, foreach=True).step))
    out.append(("torch for-loop", torch.optim.RMSprop(make(shapes), lr=1e-4, momentum=0.9, foreach=False).step))
    if compile_:
        opt = torch.optim.RMSprop(make(shapes), lr=1e-4, momentum=0.9, foreach=True)
        out.append(("torch.compile", torch.compile(opt.step)))
    if timm_:
        import timm.optim

        out.append(("ours RMSpropTF", ours.RMSpropTF(make(shapes), lr=1e-4, momentum=0.9).step))
        out.append(("timm RMSpropTF", timm.optim.RMSpropTF(make(shapes), lr=1e-4, momentum=0.9).step))
    return out


def timed(step, reps):
    t = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t) / reps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layouts", default="1e7,resnet18", help="element counts of one tensor, or resnet18")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles for minutes)")
    ap.add_argument("--no-timm", action="store_true")
    args = ap.parse_args()
    print("| layout | threads | contender | ms per step (median) | its time over ours |")
    print("|---|---|---|---|---|")
    for name in args.layouts.split(","):
        shapes = layout(name)
        steps = contenders(shapes, not args.no_compile, not args.no_timm)
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            reps = {}
            for who, step in steps:  # warm up (and compile), then ~0.2 s per timing
                step()
                reps[who] = max(1, int(0.2 / max(timed(step, 1), 1e-6)))
            times = {who: [] for who, _ in steps}
            for _ in range(args.rounds):
                for who, step in steps:
                    times[who].append(timed(step, reps[who]))
            base = {"ours": times["ours"], "ours RMSpropTF": times.get("ours RMSpropTF")}
            for who, _ in steps:
                mine = base["ours RMSpropTF"] if who.endswith("RMSpropTF") else base["ours"]
                ratio = statistics.median(a / b for a, b in zip(times[who], mine))
                ms = statistics.median(times[who]) * 1e3
                print(f"| {name} | {threads} | {who} | {ms:.3f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
