"""What ``rmsprop.torch`` promises beyond the arithmetic: state in torch's layout, in place,
skipped parameters, clear refusals that change nothing, the non-finite policy."""

import io

import pytest
import torch

import rmsprop.torch as ours


def bits(t):
    return t.detach().contiguous().view(torch.int64 if t.dtype == torch.float64 else torch.int32)


def snapshot(opt, params):
    """Every parameter's bits and the optimizer's whole state, to compare before and after."""
    sd = opt.state_dict()["state"]
    return [bits(p).clone() for p in params], {
        k: {n: (bits(v).clone() if torch.is_tensor(v) and v.dim() else v) for n, v in s.items()} for k, s in sd.items()
    }


def same(a, b):
    (pa, sa), (pb, sb) = a, b
    if len(pa) != len(pb) or any(not torch.equal(x, y) for x, y in zip(pa, pb)) or sa.keys() != sb.keys():
        return False
    for k in sa:
        if sa[k].keys() != sb[k].keys():
            return False
        for n in sa[k]:
            x, y = sa[k][n], sb[k][n]
            if not (torch.equal(x, y) if torch.is_tensor(x) else x == y):
                return False
    return True


def params(dtype=torch.float32):
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3, dtype=dtype)), torch.nn.Parameter(torch.randn(5, dtype=dtype))]


def grads(ps, seed):
    g = torch.Generator().manual_seed(seed)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def test_a_torch_checkpoint_continues_here_and_ours_continues_in_torch():
    # torch trains 5 steps; its state_dict loads into ours, which continues as torch does
    pt, po = params(torch.float64), params(torch.float64)
    theirs = torch.optim.RMSprop(pt, lr=0.01, momentum=0.9, centered=True, foreach=False)
    for s in range(5):
        grads(pt, s)
        theirs.step()
    mine = ours.RMSprop(po, lr=0.01, momentum=0.9, centered=True)
    with torch.no_grad():
        for a, b in zip(pt, po):
            b.copy_(a)
    mine.load_state_dict(theirs.state_dict())
    sd = mine.state_dict()
    assert sd["state"][0]["step"].item() == 5.0 and sd["state"][0]["step"].dtype == torch.float32
    for k, p in enumerate(pt):
        for name in ("square_avg", "grad_avg", "momentum_buffer"):
            assert torch.equal(bits(sd["state"][k][name]), bits(theirs.state[p][name])), name
    # and back: ours into a fresh torch optimizer, through torch.save / torch.load
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    again = torch.optim.RMSprop(params(torch.float64), lr=0.5, momentum=0.9, centered=True, foreach=False)
    again.load_state_dict(loaded)
    assert again.param_groups[0]["lr"] == 0.01
    for k, p in enumerate(again.param_groups[0]["params"]):
        for name in ("square_avg", "grad_avg", "momentum_buffer", "step"):
            assert torch.equal(again.state[p][name], sd["state"][k][name]), name
    # and a round trip through ours is bit-identical
    fresh = ours.RMSprop(params(torch.float64), lr=0.5, momentum=0.9, centered=True)
    fresh.load_state_dict(loaded)
    assert same(snapshot(fresh, []), snapshot(mine, []))


def test_a_parameter_without_gradient_is_skipped_as_torch_skips_it():
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1)
    before = bits(ps[1]).clone()
    ps[0].grad = torch.ones_like(ps[0])
    opt.step()
    assert torch.equal(bits(ps[1]), before)
    sd = opt.state_dict()["state"]
    assert list(sd) == [0] and sd[0]["step"].item() == 1.0
    grads(ps, 1)
    opt.step()
    sd = opt.state_dict()["state"]
    assert (sd[0]["step"].item(), sd[1]["step"].item()) == (2.0, 1.0)


def test_the_step_is_in_place_and_autograd_sees_it():
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1)
    grads(ps, 0)
    ptr, version = ps[0].data_ptr(), ps[0]._version
    out = (ps[0] ** 2).sum()  # saves ps[0] for backward
    opt.step()
    assert ps[0].data_ptr() == ptr and ps[0]._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def refused(opt, ps, error, says):
    before = snapshot(opt, ps)
    with pytest.raises(error, match=says):
        opt.step()
    assert same(snapshot(opt, ps), before), "a refused step changed something"


def test_tensors_that_cannot_be_stepped_in_place_are_refused_by_name():
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1)
    grads(ps, 0)
    opt.step()  # some state to keep
    nc = torch.nn.Parameter(torch.randn(3, 4).t())
    opt.add_param_group({"params": [nc]})
    grads(ps, 1)
    nc.grad = torch.ones_like(nc)
    refused(opt, ps + [nc], ValueError, r"parameter 2 \(group 1, shape \(4, 3\)\) is not contiguous")
    nc.grad = None
    ps[1].grad = ps[1].grad.to_sparse()
    refused(opt, ps, TypeError, "the gradient of parameter 1 .* is sparse")
    ps[1].grad = torch.ones(10)[::2]
    refused(opt, ps, ValueError, "the gradient of parameter 1 .* is not contiguous")
    ps[1].grad = ps[1].detach()
    refused(opt, ps, ValueError, "its gradient shares memory with it")


def test_parameters_sharing_memory_are_refused():
    base = torch.zeros(6)
    a, b = torch.nn.Parameter(base[:4]), torch.nn.Parameter(base[2:])
    opt = ours.RMSprop([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    refused(opt, [a, b], ValueError, "parameters 0 and 1 share memory")


def test_invalid_hyperparameters_are_refused_when_given_and_when_changed():
    p = params()
    with pytest.raises(ValueError, match="lr"):
        ours.RMSprop(p, lr=-1.0)
    with pytest.raises(ValueError, match='unknown hyperparameter "rhoo" .*did you mean "rho"'):
        ours.RMSprop(p, flavor="keras", rhoo=0.9)
    with pytest.raises(ValueError, match="flavor = 'kears'"):
        ours.RMSprop(p, flavor="kears")
    with pytest.raises(ValueError, match="nonfinite"):
        ours.RMSprop(p, nonfinite="ignore")
    opt = ours.RMSprop(p, lr=0.1)
    grads(p, 0)
    opt.step()
    opt.param_groups[0]["alpha"] = 1.5
    refused(opt, p, ValueError, "alpha|decay")
    opt.param_groups[0]["alpha"] = 0.99
    opt.param_groups[0]["centered"] = True
    refused(opt, p, ValueError, "keep other state")


def test_a_hyperparameter_changed_in_place_is_seen_at_the_next_step():
    p = params()
    opt = ours.Adam(p, lr=0.1)
    opt.param_groups[0]["betas"] = [0.9, 0.999]  # a list, as a user may write it
    grads(p, 0)
    opt.step()
    opt.param_groups[0]["betas"][0] = 1.5  # changed in place: the same list object
    refused(opt, p, ValueError, "beta1")
    opt.param_groups[0]["betas"][0] = 0.9
    opt.step()


def test_flavours_take_their_frameworks_defaults_and_names():
    p = params()
    assert ours.RMSprop(p, flavor="keras").param_groups[0]["lr"] == 0.001
    assert ours.RMSprop(p, flavor="timm").param_groups[0]["lr"] == 0.01
    opt = ours.RMSprop(p, flavor="tf1", lr=0.1, decay=0.8, momentum=0.5)
    assert opt.param_groups[0]["decay"] == 0.8
    grads(p, 0)
    opt.step()
    assert sorted(opt.state_dict()["state"][0]) == ["momentum_buffer", "square_avg", "step"]


def nan_grads(ps):
    grads(ps, 2)
    ps[1].grad[3] = float("nan")


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_non_finite_gradient_changes_nothing_under_error_and_skip(policy):
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1, momentum=0.9, nonfinite=policy)
    grads(ps, 0)
    opt.step()
    nan_grads(ps)
    before = snapshot(opt, ps)
    if policy == "error":
        with pytest.raises(ValueError, match="non-finite gradient of parameter 1 at element 3; nothing was updated"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1
    assert same(snapshot(opt, ps), before)


def test_propagate_writes_what_torch_writes():
    pt, po = params(), params()
    theirs = torch.optim.RMSprop(pt, lr=0.1, foreach=False)
    mine = ours.RMSprop(po, lr=0.1)
    for ps, opt in ((pt, theirs), (po, mine)):
        nan_grads(ps)
        opt.step()
    assert bool(po[1].isnan()[3]) and int(po[1].isnan().sum()) == 1
    for a, b in zip(pt, po):
        assert torch.equal(a.isnan(), b.isnan())
        # elsewhere as torch, up to its square root's last bit (see test_rmsprop.py): 2 ulps
        # of the larger of the parameter and the first step's quotient, lr / sqrt(1 - alpha) = 1
        eps = torch.finfo(a.dtype).eps
        torch.testing.assert_close(a[~a.isnan()], b[~b.isnan()], rtol=2 * eps, atol=2 * eps)


def test_closure_and_zero_grad_are_torchs():
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1)

    def closure():
        opt.zero_grad()
        loss = sum((p**2).sum() for p in ps)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and ps[0].grad is not None
    opt.zero_grad()
    assert all(p.grad is None for p in ps)


def test_the_modules_examples_run():
    import doctest

    import rmsprop.torch

    assert doctest.testmod(rmsprop.torch).failed == 0


def test_the_readmes_python_runs():
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    model = torch.nn.Linear(3, 1)
    for line in block.strip().splitlines():
        scope = {"model": model}
        exec(line if line.startswith("import") else "import rmsprop.torch\n" + line, scope)
        if "opt" in scope:
            model(torch.ones(2, 3)).sum().backward()
            scope["opt"].step()


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_step_that_would_not_be_finite_changes_no_parameter(policy):
    # finite gradients whose squares overflow float32 in the second parameter only: the
    # first parameter, stepped before it, is put back as it was
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1, momentum=0.9, nonfinite=policy)
    grads(ps, 0)
    opt.step()
    grads(ps, 3)
    ps[1].grad[2] = 1e30
    before = snapshot(opt, ps)
    if policy == "error":
        with pytest.raises(ValueError, match=r"step 2 would make (\w+ of )?parameter 1 non-finite at element 2 \(.*\); nothing was updated"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1
    assert same(snapshot(opt, ps), before)
    # and the next good step goes on from there, as if the refused one had not been given
    grads(ps, 4)
    opt.step()
    assert opt.state_dict()["state"][0]["step"].item() == 2.0


def corrupt(sd, k, name, value):
    bad = {"state": {i: dict(s) for i, s in sd["state"].items()}, "param_groups": sd["param_groups"]}
    bad["state"][k][name] = value
    return bad


def test_a_corrupt_checkpoint_is_refused_by_name_and_changes_nothing():
    ps = params()
    opt = ours.RMSprop(ps, lr=0.1, momentum=0.9)
    grads(ps, 0)
    opt.step()
    good = opt.state_dict()
    other, twin = (ours.RMSprop(params(), lr=0.3, momentum=0.9) for _ in range(2))  # loaded into; left alone
    for o in (other, twin):
        grads(o.param_groups[0]["params"], 1)
        o.step()
    ps_other = other.param_groups[0]["params"]
    s1 = good["state"][1]["square_avg"]
    cases = [
        (corrupt(good, 1, "square_avg", s1[:3]), ValueError, "state square_avg of parameter 1 has 3 elements"),
        (corrupt(good, 1, "square_avg", [0.0] * 5), TypeError, "state square_avg of parameter 1 is a list"),
        (corrupt(good, 1, "square_avg", -s1 - 1), ValueError, "state square_avg of parameter 1: element 0 is -"),
        (corrupt(good, 1, "momentum_bufer", s1), ValueError, "state momentum_bufer of parameter 1: this optimizer has no"),
        (dict(good, param_groups=good["param_groups"] * 2), ValueError, "parameter groups"),
    ]
    for bad, error, says in cases:
        before = snapshot(other, ps_other)
        with pytest.raises(error, match=says):
            other.load_state_dict(bad)
        assert same(snapshot(other, ps_other), before), f"a refused checkpoint changed the state ({says})"
        assert other.param_groups[0]["lr"] == 0.3, f"a refused checkpoint changed the learning rate ({says})"
    # the step after them is the one it would have taken
    for o in (twin, other):
        grads(o.param_groups[0]["params"], 2)
        o.step()
    assert same(snapshot(other, ps_other), snapshot(twin, twin.param_groups[0]["params"]))
    other.load_state_dict(good)
    assert same(snapshot(other, []), snapshot(opt, []))
