#!/usr/bin/env python3
"""Records bitsandbytes' block-wise 8-bit quantisation on the CPU into ``quant.json``: the
dynamic-tree code tables as bitsandbytes builds them on this machine, and
``quantize_blockwise`` (block 256) of seeded inputs with both tables, for checking the
core's codes (``rmsprop::quant``) against the library that defined them; and PyTorch's
float32 → bfloat16 rounding of the same inputs.

    python3 -m venv /tmp/bnb && /tmp/bnb/bin/pip install torch==2.15.0 bitsandbytes==0.50.2
    /tmp/bnb/bin/python testdata/bnb/record.py          # rewrites testdata/bnb/quant.json

Every number is a float32 value written as the shortest decimal that reads back as the
same binary64 (the cast to float32 is exact).
"""

import json
import pathlib

import bitsandbytes as bnb
import torch
from bitsandbytes.functional import create_dynamic_map, quantize_blockwise

BLOCK = 256


def inputs():
    """Seeded inputs: signed ones (momentum-like), non-negative ones (averages of squares),
    a wide dynamic range, zeros inside blocks, a last block shorter than 256."""
    g = torch.Generator().manual_seed(26)
    normal = torch.randn(1024, generator=g)
    squares = torch.randn(1000, generator=g) ** 2 * 1e-3
    wide = torch.exp(torch.empty(768).uniform_(-30, 5, generator=g)) * torch.sign(torch.randn(768, generator=g))
    sparse = torch.randn(512, generator=g)
    sparse[::3] = 0.0
    sparse[256:] = 0.0  # a whole block of zeros: absmax 0
    return {
        "normal": (normal, True),
        "squares": (squares, False),
        "wide": (wide, True),
        "wide_abs": (wide.abs(), False),
        "sparse": (sparse, True),
    }


def floats(t):
    return [float(v) for v in t.to(torch.float32).tolist()]


def main():
    tables = {"signed": create_dynamic_map(signed=True), "unsigned": create_dynamic_map(signed=False)}
    cases = []
    for name, (x, signed) in inputs().items():
        code = tables["signed" if signed else "unsigned"].clone()
        codes, state = quantize_blockwise(x.contiguous(), code=code, blocksize=BLOCK)
        cases.append(
            {
                "name": name,
                "table": "signed" if signed else "unsigned",
                "input": floats(x),
                "codes": [int(c) for c in codes.tolist()],
                "absmax": floats(state.absmax),
                "bf16_bits": [int(b) & 0xFFFF for b in x.to(torch.bfloat16).view(torch.int16).tolist()],
            }
        )
    out = {
        "format_version": 1,
        "framework": "bitsandbytes",
        "framework_version": bnb.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "block": BLOCK,
        "tables": {k: floats(v) for k, v in tables.items()},
        "cases": cases,
    }
    path = pathlib.Path(__file__).with_name("quant.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
