#!/usr/bin/env python3
"""Our RMSProp step against torch.optim.RMSprop, measured in one run on this machine.

Runs `rmsprop bench --json` (ours) and, right after, torch.optim.RMSprop on the same
sizes and layouts: eager with foreach on and off, and torch.compile(optimizer.step); on 1
thread and on all threads. Prints, per case, seconds per step and the ratio torch/ours
(how many times faster ours is). Skips, with a message, where torch is not installed.

    python3 bench/compare_torch.py                       # 1e3 ... 1e8, plain/centered/momentum
    python3 bench/compare_torch.py --sizes 1e5,1e7 --variants plain --no-compile
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(args):
    exe = os.environ.get("RMSPROP_BIN") or os.path.join(ROOT, "target", "release", "rmsprop")
    if not os.path.exists(exe):
        subprocess.run(["cargo", "build", "--release", "-p", "rmsprop-cli"], cwd=ROOT, check=True)
    cmd = [exe, "bench", "--json", "--sizes", args.sizes, "--variants", args.variants,
           "--threads", args.threads, "--model-sizes", args.model_sizes]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"]


def best_time(f, batches=5, min_batch=0.1):
    f()
    reps = 1
    while True:
        t = time.perf_counter()
        for _ in range(reps):
            f()
        if time.perf_counter() - t >= min_batch or reps > 1 << 20:
            break
        reps *= 2
    best = float("inf")
    for _ in range(batches):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def model_sizes(n):
    # the same 100-tensor layout as `rmsprop bench` (crates/rmsprop-lab/src/bench.rs)
    w = [[1.0, 30.0, 300.0, 3000.0][i % 4] * (1 + i % 7) for i in range(100)]
    total = sum(w)
    return [max(1, round(x / total * n)) for x in w]


def torch_time(torch, variant, sizes, mode, batches, min_batch):
    params = [torch.nn.Parameter(torch.ones(k, dtype=torch.float32)) for k in sizes]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    kw = {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}
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
    with torch.no_grad():
        return best_time(step, batches, min_batch)


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

    our_rows = [r for r in ours(args) if r["variant"] != "probe"]
    batches, min_batch = (3, 0.02) if args.quick else (5, 0.1)
    modes = ["foreach", "for_loop"] + ([] if args.no_compile else ["compile"])
    results = []
    layouts = {sum(model_sizes(int(float(s)))): model_sizes(int(float(s))) for s in args.model_sizes.split(",")}
    for r in our_rows:
        sizes = [r["n"]] if r["layout"] == "single" else layouts[r["n"]]
        torch.set_num_threads(r["threads"])
        row = {"variant": r["variant"], "layout": r["layout"], "n": r["n"], "threads": r["threads"],
               "ours_s": r["seconds_per_step"], "torch_version": torch.__version__}
        for mode in modes:
            try:
                row[mode + "_s"] = torch_time(torch, r["variant"], sizes, mode, batches, min_batch)
            except Exception as e:  # a compile failure is reported, not fatal
                row[mode + "_s"] = None
                row[mode + "_error"] = str(e).splitlines()[0][:200]
            if row[mode + "_s"]:
                row["ratio_" + mode] = row[mode + "_s"] / row["ours_s"]
        eager = [row[m + "_s"] for m in ("foreach", "for_loop") if row.get(m + "_s")]
        row["ratio_best_eager"] = min(eager) / row["ours_s"] if eager else None
        results.append(row)
        if not args.json:
            fmt = lambda v: "      -" if v is None else f"{v:7.2f}"
            print(f"{r['variant']:<9} {r['layout']:<6} n={r['n']:<10} threads={r['threads']}  ours {r['seconds_per_step']:.3e} s  "
                  f"torch/ours: foreach {fmt(row.get('ratio_foreach'))}  for-loop {fmt(row.get('ratio_for_loop'))}  "
                  f"compile {fmt(row.get('ratio_compile'))}", flush=True)
    if args.json:
        print(json.dumps({"results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
