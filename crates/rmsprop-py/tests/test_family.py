"""The rest of the family against ``torch.optim`` (``foreach=False``), as
``test_rmsprop.py`` does RMSprop (Adadelta, with two roots a step, at the end), and Yogi
against ``torch_optimizer.Yogi`` (torch has none; that package is PyTorch users' Yogi):
SGD takes no root and agrees in every bit over a free run; Adagrad, Adam, AdamW and Yogi
agree in every bit except where torch's MKL square root is not correctly rounded, and
there within 2 ulps of the larger of the parameter and its step (Adagrad, whose root meets
the gradient at once) or 4 (Adam and Yogi, whose root is divided by ``sqrt(1 - β₂ᵗ)`` and
offset by ε, two more roundings, before it divides the step)."""

import copy
import functools

import pytest
import torch
import torch_optimizer  # .ci/run installs it; without it these tests fail
from test_rmsprop import bits, cnn, correctly_rounded_sqrt, mlp, resync, ulp

import rmsprop.torch as ours

STEPS = 50

SGD_VARIANTS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "dampening": dict(momentum=0.9, dampening=0.3),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "weight_decay": dict(momentum=0.5, weight_decay=0.01),
    "maximize": dict(maximize=True, lr=1e-3),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
def test_sgd_is_torchs_bit_for_bit(variant, dtype):
    kw = dict(lr=0.05) | SGD_VARIANTS[variant]
    model_a, loss_fn = cnn(dtype)
    model_b = copy.deepcopy(model_a)
    theirs = torch.optim.SGD(model_a.parameters(), foreach=False, **kw)
    mine = ours.SGD(model_b.parameters(), **kw)
    for _ in range(STEPS):
        for m, o in ((model_a, theirs), (model_b, mine)):
            o.zero_grad()
            loss_fn(m).backward()
            o.step()
    sd = mine.state_dict()["state"]
    for k, (a, b) in enumerate(zip(model_a.parameters(), model_b.parameters())):
        assert torch.equal(bits(a), bits(b)), f"parameter {k}"
        if "momentum" in kw:
            assert torch.equal(bits(theirs.state[a]["momentum_buffer"]), bits(sd[k]["momentum_buffer"]))
        else:
            assert k not in sd


def adam_root(group, st):
    return st["max_exp_avg_sq"] if group.get("amsgrad") else st["exp_avg_sq"]


def sum_root(group, st):
    return st["sum"]


def yogi_root(group, st):
    return st["exp_avg_sq"]


def single_tensor(cls):
    """torch's optimizer on its per-tensor kernels, the ones it documents as the reference."""
    return functools.partial(cls, foreach=False)


# theirs, ours, hyperparameters, the root's argument, the bound in ulps where that root is not exact
CASES = {
    "adagrad": (single_tensor(torch.optim.Adagrad), ours.Adagrad, dict(lr=0.05), sum_root, 2),
    "adagrad_decays": (
        single_tensor(torch.optim.Adagrad),
        ours.Adagrad,
        dict(lr=0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
        sum_root,
        2,
    ),
    "adam": (single_tensor(torch.optim.Adam), ours.Adam, dict(lr=0.01), adam_root, 4),
    "adam_amsgrad_decay": (
        single_tensor(torch.optim.Adam),
        ours.Adam,
        dict(lr=0.01, amsgrad=True, weight_decay=0.01),
        adam_root,
        4,
    ),
    "adam_decoupled": (
        single_tensor(torch.optim.Adam),
        ours.Adam,
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        adam_root,
        4,
    ),
    "adamw": (single_tensor(torch.optim.AdamW), ours.AdamW, dict(lr=0.01, betas=(0.8, 0.99)), adam_root, 4),
    "adamw_maximize": (single_tensor(torch.optim.AdamW), ours.AdamW, dict(lr=0.001, maximize=True), adam_root, 4),
    "yogi": (torch_optimizer.Yogi, ours.Yogi, dict(), yogi_root, 4),
    "yogi_decay": (
        torch_optimizer.Yogi,
        ours.Yogi,
        dict(lr=0.05, betas=(0.3, 0.99), eps=1e-4, initial_accumulator=0.01, weight_decay=0.01),
        yogi_root,
        4,
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("model", [mlp, cnn])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_family_is_torchs(case, model, dtype):
    their_cls, my_cls, kw, root, bound = CASES[case]
    model_a, loss_fn = model(dtype)
    model_b = copy.deepcopy(model_a)
    pa, pb = list(model_a.parameters()), list(model_b.parameters())
    theirs, mine = their_cls(pa, **kw), my_cls(pb, **kw)
    checked = {"bitwise": 0, "inexact": 0}
    for _ in range(STEPS):
        for m, o in ((model_a, theirs), (model_b, mine)):
            o.zero_grad()
            loss_fn(m).backward()
        before = [p.detach().clone() for p in pa]
        theirs.step()
        mine.step()
        sd = mine.state_dict()["state"]
        for k, (a, b) in enumerate(zip(pa, pb)):
            st = theirs.state[a]
            assert sorted(st) == sorted(sd[k]), f"parameter {k}: state {sorted(st)} vs {sorted(sd[k])}"
            assert float(st["step"]) == float(sd[k]["step"])
            assert type(st["step"]) is type(sd[k]["step"]), "the step is kept as theirs keeps it"
            for name, v in st.items():
                if name != "step":  # the averages and sums take no root
                    assert torch.equal(bits(v), bits(sd[k][name])), f"parameter {k}: {name}"
            arg = root(theirs.param_groups[0], st)
            exact = torch.sqrt(arg) == correctly_rounded_sqrt(arg)
            assert bool((bits(a) == bits(b))[exact].all()), f"parameter {k} differs where torch's root is exact"
            scale = torch.maximum(before[k].abs(), (before[k] - a).abs())
            ulps = ((a - b).abs() / ulp(scale))[~exact]
            assert bool((ulps <= bound).all()), f"parameter {k}: {ulps.max()} ulps"
            checked["bitwise"] += int(exact.sum())
            checked["inexact"] += int((~exact).sum())
        resync(theirs, mine, pa, pb)
    assert checked["bitwise"] > 2 * checked["inexact"], checked


def test_by_name_takes_any_flavour_and_refuses_what_it_does_not_know():
    w = torch.nn.Parameter(torch.ones(3))
    opt = ours.by_name("optax.adam", [w], b1=0.8)
    w.grad = torch.ones(3)
    opt.step()
    assert sorted(opt.state_dict()["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]
    with pytest.raises(ValueError, match='unknown optimizer "pytorch.adma" \\(did you mean "pytorch.adam"\\?\\)'):
        ours.by_name("pytorch.adma", [w])
    with pytest.raises(ValueError, match='unknown hyperparameter "bet1"'):
        ours.by_name("pytorch.adam", [w], bet1=0.9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", [dict(), dict(lr=0.5, rho=0.8, weight_decay=0.01), dict(maximize=True)])
def test_adadelta_is_torchs(kw, dtype):
    """Two roots a step: where both are correctly rounded in torch, the parameter and both
    averages agree in every bit; elsewhere ``square_avg`` still does (it takes no root) and
    the parameter within 4 ulps of its largest term (two roots, a division and a product
    from the quotient) and ``acc_delta`` within 8 (it holds that quotient squared, which
    doubles its relative error)."""
    model_a, loss_fn = cnn(dtype)
    model_b = copy.deepcopy(model_a)
    pa, pb = list(model_a.parameters()), list(model_b.parameters())
    theirs, mine = torch.optim.Adadelta(pa, foreach=False, **kw), ours.Adadelta(pb, **kw)
    checked = {"bitwise": 0, "inexact": 0}
    rho, eps = theirs.param_groups[0]["rho"], theirs.param_groups[0]["eps"]
    for _ in range(STEPS):
        for m, o in ((model_a, theirs), (model_b, mine)):
            o.zero_grad()
            loss_fn(m).backward()
        before = [(p.detach().clone(), theirs.state[p].get("acc_delta", torch.zeros_like(p)).clone()) for p in pa]
        theirs.step()
        mine.step()
        sd = mine.state_dict()["state"]
        for k, (a, b) in enumerate(zip(pa, pb)):
            st = theirs.state[a]
            assert sorted(st) == sorted(sd[k]) and float(st["step"]) == float(sd[k]["step"])
            assert torch.equal(bits(st["square_avg"]), bits(sd[k]["square_avg"])), f"parameter {k}: square_avg"
            x_old, acc_old = before[k]
            roots = [st["square_avg"].add(eps), acc_old.add(eps)]
            exact = roots[0].sqrt() == correctly_rounded_sqrt(roots[0])
            exact &= roots[1].sqrt() == correctly_rounded_sqrt(roots[1])
            delta = (x_old - a).abs() / theirs.param_groups[0]["lr"]
            for name, t_a, t_b, terms, bound in (
                ("param", a, b, [x_old.abs(), (x_old - a).abs()], 4),
                ("acc_delta", st["acc_delta"], sd[k]["acc_delta"], [rho * acc_old.abs(), (1 - rho) * delta * delta], 8),
            ):
                assert bool((bits(t_a) == bits(t_b))[exact].all()), f"parameter {k}: {name} where the roots are exact"
                scale = t_a.abs()
                for term in terms:
                    scale = torch.maximum(scale, term)
                ulps = ((t_a - t_b).abs() / ulp(scale))[~exact]
                assert bool((ulps <= bound).all()), f"parameter {k}: {name} {ulps.max()} ulps"
            checked["bitwise"] += int(exact.sum())
            checked["inexact"] += int((~exact).sum())
        resync(theirs, mine, pa, pb)
    assert checked["bitwise"] > checked["inexact"], checked


def test_a_yogi_checkpoint_moves_both_ways():
    """torch_optimizer's Yogi keeps its step as a Python int: ours writes it so, and each
    loads the other's ``state_dict`` with every bit of both moments."""
    model_a, loss_fn = mlp(torch.float32)
    model_b = copy.deepcopy(model_a)
    theirs, mine = torch_optimizer.Yogi(model_a.parameters(), lr=0.05), ours.Yogi(model_b.parameters(), lr=0.05)
    for m, o in ((model_a, theirs), (model_b, mine)):
        for _ in range(3):
            o.zero_grad()
            loss_fn(m).backward()
            o.step()
    into_theirs = torch_optimizer.Yogi(copy.deepcopy(model_b).parameters(), lr=0.5)
    into_theirs.load_state_dict(mine.state_dict())
    assert into_theirs.param_groups[0]["lr"] == 0.05
    into_mine = ours.Yogi(copy.deepcopy(model_a).parameters(), lr=0.5)
    into_mine.load_state_dict(theirs.state_dict())
    for source, loaded in ((mine.state_dict(), into_theirs.state_dict()), (theirs.state_dict(), into_mine.state_dict())):
        for k, st in source["state"].items():
            assert st["step"] == 3 and type(loaded["state"][k]["step"]) is int
            for name in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(bits(st[name]), bits(loaded["state"][k][name])), f"parameter {k}: {name}"
