"""The golden vectors recorded from the frameworks (``testdata/golden/``), replayed through
the Python API: ``rmsprop.torch.by_name("<flavour>.<optimizer>", params, **the framework's
own arguments)``, each step's parameters against the recorded ones within the file's
tolerance, and every parameter bit at every step for the cases the Rust replayer reproduces
bit for bit (its own test asserts the counts, parameters and state: see
``crates/rmsprop-golden/tests/golden.rs``)."""

import json
import pathlib

import pytest
import torch

import rmsprop.torch as ours

GOLDEN = pathlib.Path(__file__).parents[3] / "testdata" / "golden"
FLAVOUR = {"torch": "pytorch", "keras": "keras", "optax": "optax", "mxnet": "mxnet", "timm": "timm"}
# at least this many cases bit for bit (the Rust golden test's counts, parameters and state)
BIT_EXACT = {"torch.json": 47, "keras.json": 24, "optax.json": 16, "mxnet.json": 46, "timm.json": 9, "yogi.json": 6}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def replay(case):
    """(within tolerance, bit for bit) of one case through ``rmsprop.torch.by_name``."""
    dtype = DTYPES[case["dtype"]]
    args = {k: v for k, v in case["hyperparams"]["framework"].items() if v is not None and k != "foreach"}
    shapes = case.get("shapes") or [[len(case["x0"])]]
    sizes = [int(torch.tensor(s).prod()) if s else 1 for s in shapes]
    split = lambda row: [t.view(s) for t, s in zip(torch.tensor(row, dtype=dtype).split(sizes), shapes)]  # noqa: E731
    params = [torch.nn.Parameter(t.clone()) for t in split(case["x0"])]
    opt = ours.by_name(f"{FLAVOUR[case['framework']]}.{case['optimizer']}", params, **args)
    scale = torch.tensor(case["x0"], dtype=torch.float64).abs()
    for row in case["x"]:
        scale = torch.maximum(scale, torch.tensor(row, dtype=torch.float64).abs())
    within, exact = True, True
    for t, (g, expected) in enumerate(zip(case["grads"], case["x"])):
        if case.get("lr_schedule"):
            opt.param_groups[0]["lr"] = case["lr_schedule"][t]
        for p, gt in zip(params, split(g)):
            p.grad = gt
        opt.step()
        got = torch.cat([p.detach().reshape(-1) for p in params])
        want = torch.tensor(expected, dtype=dtype)
        exact &= torch.equal(got, want)
        within &= bool(((got.double() - want.double()).abs() <= case["tolerance"]["x_rtol"] * scale).all())
    return within, exact


@pytest.mark.parametrize("name", sorted(BIT_EXACT))
def test_golden_files_replay_through_python(name):
    cases = json.loads((GOLDEN / name).read_text())["cases"]
    results = {c["name"]: replay(c) for c in cases}
    outside = [n for n, (within, _) in results.items() if not within]
    assert not outside, f"{name}: outside the tolerance: {outside}"
    exact = sum(e for _, e in results.values())
    assert exact >= BIT_EXACT[name], f"{name}: {exact} of {len(cases)} bit for bit"
