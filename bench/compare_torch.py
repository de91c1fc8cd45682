#!/usr/bin/env python3
"""Our RMSProp step against torch.optim.RMSprop, measured in one run on this machine.

Per case (variant, layout, size, threads), torch.optim.RMSprop is set up once in each
mode (eager with foreach on and off, and torch.compile(optimizer.step)); then, for
--rounds rounds, ours (`rmsprop bench --rounds 1` on that one case) and each torch mode
are timed back to back. A ratio is torch's seconds over ours within one round (how many
times faster ours is), the median over the rounds: the machine is shared and its memory
bandwidth drifts by as much as 3x within minutes, so numbers taken apart would measure
the drift. Skips, with a message, where torch is not installed.

    python3 bench/compare_torch.py                       # 1e3 ... 1e8, plain/centered/momentum
    python3 bench/compare_torch.py --sizes 1e5,1e7 --variants plain --no-compile
    python3 bench/compare_torch.py --json > run.json && python3 bench/compare_torch.py --markdown run.json
    python3 bench/compare_torch.py --sizes 1e7 --variants plain --state-storage int8 --bnb

With --state-storage, ours keeps its state in that storage (f32, bf16, int8; torch's is
float32 whatever it is); with --bnb, bitsandbytes' RMSprop8bit on the CPU is timed too
(plain only: its 8-bit state is its only RMSprop of block-wise state; needs bitsandbytes).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(exe, variant, layout, n, threads, quick, storage):
    """One round of `rmsprop bench` on one case: our seconds per step."""
    sizes = ["--sizes", str(n), "--model-sizes="] if layout == "single" else ["--sizes=", "--model-sizes", str(n)]
    cmd = [exe, "bench", "--json", "--rounds", "1", "--variants", variant, "--threads", str(threads)] + sizes
    cmd += ["--state-storage", storage]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return next(r for r in json.loads(out)["results"] if r["variant"] == variant)["seconds_per_step"]


def calibrate(f, min_batch):
    f()
    reps = 1
    while True:
        t = time.perf_counter()
        for _ in range(reps):
            f()
        if time.perf_counter() - t >= min_batch or reps > 1 << 20:
            return reps
        reps *= 2


def batch(f, reps):
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps


def model_sizes(n):
    # the same 100-tensor layout as `rmsprop bench` (crates/rmsprop-lab/src/bench.rs)
    w = [[1.0, 30.0, 300.0, 3000.0][i % 4] * (1 + i % 7) for i in range(100)]
    total = sum(w)
    return [max(1, round(x / total * n)) for x in w]


def torch_step(torch, variant, params, mode):
    """A step function of torch.optim.RMSprop in `mode` over `params`, ready to time
    (`bnb8`: bitsandbytes' RMSprop8bit)."""
    kw = {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}
    if mode == "bnb8":
        import bitsandbytes as bnb

        return bnb.optim.RMSprop8bit(params, **kw).step
    if variant == "centered":
        kw["centered"] = True
    if variant == "momentum":
        kw["momentum"] = 0.9
    opt = torch.optim.RMSprop(params, foreach=(mode == "foreach"), **kw)
    step = opt.step
    if mode == "compile":
        torch._dynamo.reset()  # a fresh optimizer is a new graph; don't hit the recompile limit
        step = torch.compile(opt.step)
        for _ in range(3):  # compile and settle before timing
            step()
    return step


def markdown(path):
    rows = json.load(open(path))["results"]
    print("| variant | layout | n | threads | ours s/step | torch foreach | torch for-loop | torch.compile | ours vs best eager | ours vs compile |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    f = lambda v: "–" if v is None else f"{v:.3g}"
    x = lambda v: "–" if v is None else f"{v:.2f}x"
    for r in rows:
        print(f"| {r['variant']} | {r['layout']} | {r['n']:.0e} | {r['threads']} | {f(r['ours_s'])} | {f(r.get('foreach_s'))} | "
              f"{f(r.get('for_loop_s'))} | {f(r.get('compile_s'))} | {x(r.get('ratio_best_eager'))} | {x(r.get('ratio_compile'))} |")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3,1e4,1e5,1e6,1e7,1e8")
    ap.add_argument("--variants", default="plain,centered,momentum")
    ap.add_argument("--threads", default="1,all")
    ap.add_argument("--model-sizes", default="1e7")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--state-storage", default="f32", help="how ours keeps its state: f32, bf16 or int8")
    ap.add_argument("--bnb", action="store_true", help="also bitsandbytes' RMSprop8bit on the CPU (plain)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (ratios: their median)")
    ap.add_argument("--quick", action="store_true", help="shorter timing batches")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", metavar="JSON", help="print the README table of a saved --json run and exit")
    args = ap.parse_args()
    if args.markdown:
        return markdown(args.markdown)
    try:
        import torch
    except ImportError:
        print("compare_torch.py: torch is not installed here (pip install torch); skipped.")
        return 0
    if shutil.which("cc") is None and not args.no_compile:
        print("note: no C compiler found; torch.compile needs one. Skipping it.", file=sys.stderr)
        args.no_compile = True

    exe = os.environ.get("RMSPROP_BIN") or os.path.join(ROOT, "target", "release", "rmsprop")
    if not os.environ.get("RMSPROP_BIN"):
        subprocess.run(["cargo", "build", "--release", "-p", "rmsprop-cli"], cwd=ROOT, check=True)
    min_batch = 0.02 if args.quick else 0.1
    modes = ["foreach", "for_loop"] + ([] if args.no_compile else ["compile"]) + (["bnb8"] if args.bnb else [])
    cores = os.cpu_count() or 1
    threads = [cores if t == "all" else int(t) for t in args.threads.split(",")]
    cases = [("single", int(float(n))) for n in args.sizes.split(",") if n]
    cases += [("model", int(float(n))) for n in args.model_sizes.split(",") if n]
    median = lambda v: sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
    results = []
    for layout, n in cases:
        sizes = [n] if layout == "single" else model_sizes(n)
        for variant in args.variants.split(","):
            for t in threads:
                torch.set_num_threads(t)
                row = {"variant": variant, "layout": layout, "n": sum(sizes), "threads": t,
                       "rounds": args.rounds, "torch_version": torch.__version__, "state_storage": args.state_storage}
                with torch.no_grad():
                    params = [torch.nn.Parameter(torch.ones(k, dtype=torch.float32)) for k in sizes]
                    for p in params:
                        p.grad = torch.full_like(p, 1e-3)
                    steps, reps = {}, {}
                    for mode in modes:
                        if mode == "bnb8" and variant != "plain":
                            continue
                        try:
                            steps[mode] = torch_step(torch, variant, params, mode)
                            reps[mode] = calibrate(steps[mode], min_batch)
                        except Exception as e:  # a compile failure is reported, not fatal
                            row[mode + "_error"] = str(e).splitlines()[0][:200]
                    secs = {k: [] for k in ["ours"] + list(steps)}
                    for _ in range(args.rounds):
                        secs["ours"].append(ours(exe, variant, layout, n, t, args.quick, args.state_storage))
                        for mode, step in steps.items():
                            secs[mode].append(batch(step, reps[mode]))
                    del steps, params
                row["ours_s"] = min(secs["ours"])
                for mode in modes:
                    row[mode + "_s"] = min(secs[mode]) if secs.get(mode) else None
                    if secs.get(mode):
                        row["ratio_" + mode] = median([m / o for m, o in zip(secs[mode], secs["ours"])])
                eager = [m for m in ("foreach", "for_loop") if secs.get(m)]
                row["ratio_best_eager"] = (median([min(secs[m][r] for m in eager) / secs["ours"][r]
                                                   for r in range(args.rounds)]) if eager else None)
                results.append(row)
                if not args.json:
                    fmt = lambda v: "      -" if v is None else f"{v:7.2f}"
                    print(f"{variant:<9} {layout:<6} n={row['n']:<10} threads={t}  ours {row['ours_s']:.3e} s  "
                          f"torch/ours: foreach {fmt(row.get('ratio_foreach'))}  for-loop {fmt(row.get('ratio_for_loop'))}  "
                          f"compile {fmt(row.get('ratio_compile'))}"
                          + (f"  bnb RMSprop8bit {fmt(row.get('ratio_bnb8'))}" if args.bnb else ""), flush=True)
    if args.json:
        print(json.dumps({"results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
