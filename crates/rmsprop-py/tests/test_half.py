"""bfloat16 and float16 parameters: stepped in place in their own storage, with the state
kept in float32 (as mixed-precision training keeps a master state; PyTorch's own RMSprop
would keep it in the parameter's 8 or 11 bits, where ``1 - α = 0.01`` is lost against an
average near 1). So a step is torch's float32 step from the same float32 state and the
parameter widened, rounded to the parameter's dtype once, at the end: checked here against
``torch.optim.RMSprop(foreach=False)`` in float32, step by step, as ``test_rmsprop.py`` does."""

import copy

import pytest
import torch
from test_rmsprop import correctly_rounded_sqrt, mlp, torch_denominator, ulp

import rmsprop.torch as ours

STEPS = 30


def raw(t):
    """The bits of a tensor of any floating dtype, as integers of its width."""
    width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().view(-1).view(width)


VARIANTS = {
    "plain": dict(),
    "centered_momentum_decay": dict(momentum=0.9, centered=True, weight_decay=0.01),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_half_parameters_take_torchs_float32_step_rounded_once(variant, dtype):
    kw = dict(lr=0.01, alpha=0.9) | VARIANTS[variant]
    model, loss_fn = mlp(dtype)
    params = list(model.parameters())
    storage = [p.data_ptr() for p in params]
    mine = ours.RMSprop(params, **kw)
    checked = {"bitwise": 0, "inexact_roots": 0, "moved": 0}
    for step in range(STEPS):
        mine.zero_grad()
        loss_fn(model).backward()
        before = [p.detach().clone() for p in params]
        prior = mine.state_dict()["state"]
        # torch in float32 from the same place: the parameters widened (exact), our state
        wide = [p.detach().float().requires_grad_() for p in params]
        for w, p in zip(wide, params):
            w.grad = p.grad.float()
        ref = torch.optim.RMSprop(wide, foreach=False, **kw)
        if step:
            ref.load_state_dict(mine.state_dict())
        ref.step()
        mine.step()
        sd = mine.state_dict()["state"]
        for k, (w, p) in enumerate(zip(wide, params)):
            st = ref.state[w]
            assert p.dtype == dtype and p.data_ptr() == storage[k], "stepped in place, in its own dtype"
            for name in ("square_avg", "grad_avg"):  # no root: every bit
                if name in st:
                    assert sd[k][name].dtype == torch.float32
                    assert torch.equal(raw(st[name]), raw(sd[k][name])), f"parameter {k}: {name}"
            arg, _ = torch_denominator(st, ref.param_groups[0])
            exact = (arg.sqrt() == correctly_rounded_sqrt(arg)).view(-1)
            rounded = w.detach().to(dtype)
            pairs = [("param", rounded, p, rounded.abs(), 1)]
            if "momentum_buffer" in st:
                # the buffer's sum cancels: its error is an ulp or two of its larger term
                b_old = prior[k]["momentum_buffer"] if k in prior else torch.zeros_like(w)
                g = w.grad.double() + kw.get("weight_decay", 0) * before[k].double()
                q = g.abs() / torch_denominator(st, ref.param_groups[0])[1]
                scale = torch.maximum(st["momentum_buffer"].abs(), torch.maximum(0.9 * b_old.abs(), q.float()))
                pairs.append(("momentum_buffer", st["momentum_buffer"], sd[k]["momentum_buffer"], scale, 2))
            for name, a, b, scale, bound in pairs:
                assert bool((raw(a) == raw(b))[exact].all()), f"parameter {k}: {name} where torch's root is exact"
                off = ((a.double() - b.double()).abs() / ulp(scale).double()).view(-1)[~exact]
                assert bool((off <= bound).all()), f"parameter {k}: {name} {off.max()} ulps"
            checked["bitwise"] += int(exact.sum())
            checked["inexact_roots"] += int((~exact).sum())
            checked["moved"] += int((raw(p) != raw(before[k])).sum())
    assert checked["bitwise"] > 2 * checked["inexact_roots"], checked
    assert checked["moved"] > checked["bitwise"] // 4, f"the parameters hardly moved in {dtype}: {checked}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_checkpoint_keeps_its_float32_state_and_loads_into_torch(dtype):
    model, loss_fn = mlp(dtype)
    mine = ours.RMSprop(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(3):
        mine.zero_grad()
        loss_fn(model).backward()
        mine.step()
    sd = mine.state_dict()
    again = ours.RMSprop(copy.deepcopy(model).parameters(), lr=0.5, momentum=0.9)
    again.load_state_dict(sd)
    for k, st in sd["state"].items():
        for name in ("square_avg", "momentum_buffer"):
            assert torch.equal(raw(st[name]), raw(again.state_dict()["state"][k][name])), "a round trip is lossless"
    # torch's own RMSprop keeps its state in the parameter's dtype: it rounds ours on load
    theirs = torch.optim.RMSprop(copy.deepcopy(model).parameters(), lr=0.5, momentum=0.9)
    theirs.load_state_dict(sd)
    for k, p in enumerate(theirs.param_groups[0]["params"]):
        assert theirs.state[p]["square_avg"].dtype == dtype
        assert torch.equal(raw(theirs.state[p]["square_avg"]), raw(sd["state"][k]["square_avg"].to(dtype)))
