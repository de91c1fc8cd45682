"""Optimizer state in fewer bytes from Python: ``state_storage="bf16" | "int8"`` (and
``min_8bit_size``, ``bf16_stochastic_round``) on every class and on any optimizer
``by_name``. The step is torch's float32 step on the state as kept: checked here through
what a user sees — the state ``state_dict()`` gives (decoded, float32, in torch's layout)
is what the storage can hold, the run stays close to float32 state's, and a checkpoint
resumes the very same run."""

import copy

import pytest
import torch

import rmsprop.torch as ours

N = 5000  # above min_8bit_size (4096): kept in 8 bits


def params():
    g = torch.Generator().manual_seed(3)
    return [torch.nn.Parameter(torch.randn(N, generator=g)), torch.nn.Parameter(torch.randn(10, generator=g))]


def run(make, steps=20, start=None):
    ps = params()
    opt = make(ps)
    if start is not None:
        opt.load_state_dict(start)
    g = torch.Generator().manual_seed(4)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * torch.logspace(-3, 1, p.numel())[torch.randperm(p.numel(), generator=g)]
        opt.step()
    return ps, opt


MAKERS = {
    "RMSprop": lambda storage: lambda ps: ours.RMSprop(ps, lr=1e-3, centered=True, momentum=0.9, state_storage=storage),
    "Adam": lambda storage: lambda ps: ours.by_name("pytorch.adam", ps, lr=1e-3, state_storage=storage),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_bf16_state_holds_bfloat16_values_and_stays_close_to_float32_state(name):
    (w, b), opt = run(MAKERS[name]("bf16"))
    (w32, b32), _ = run(MAKERS[name]("f32"))
    for s in opt.state_dict()["state"].values():
        for k, v in s.items():
            if k != "step" and v.is_floating_point():
                assert v.dtype == torch.float32
                assert torch.equal(v, v.to(torch.bfloat16).to(torch.float32)), k  # held in bfloat16
    assert not torch.equal(w, w32)  # the state was kept in bfloat16
    assert (w - w32).abs().max() < 1e-3 * 20  # 20 steps of at most lr each, and far less apart


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_int8_state_keeps_256_values_a_block_and_small_tensors_in_float32(name):
    (w, b), opt = run(MAKERS[name]("int8"))
    (w32, b32), opt32 = run(MAKERS[name]("f32"))
    state, state32 = opt.state_dict()["state"], opt32.state_dict()["state"]
    for k, v in state[0].items():
        if k == "step" or not v.is_floating_point():
            continue
        # a block's values are its scale times entries of a 256-entry code
        for block in v.split(256):
            assert len(torch.unique(block)) <= 256
            assert block.abs().max() in block.abs()
    assert not torch.equal(w, w32)
    # the 10-element bias is below min_8bit_size: its state is float32's, bit for bit
    for k, v in state[1].items():
        if k != "step":
            assert torch.equal(v, state32[1][k]), k
    assert torch.equal(b, b32)


def test_min_8bit_size_packs_small_tensors_too():
    (_, b), _ = run(lambda ps: ours.RMSprop(ps, lr=1e-3, state_storage="int8", min_8bit_size=0))
    (_, b32), _ = run(lambda ps: ours.RMSprop(ps, lr=1e-3))
    assert not torch.equal(b, b32)


@pytest.mark.parametrize("storage", ["bf16", "int8"])
def test_a_checkpoint_resumes_the_same_run(storage):
    make = MAKERS["RMSprop"](storage)
    (w, _), opt = run(make, steps=5)
    saved = copy.deepcopy(opt.state_dict())
    # five more steps, against five more from the checkpoint in a new optimizer
    g = torch.Generator().manual_seed(9)
    grads = [torch.randn(N, generator=g) for _ in range(5)]
    w2 = torch.nn.Parameter(w.detach().clone())
    b2 = torch.nn.Parameter(opt.param_groups[0]["params"][1].detach().clone())
    again = make([w2, b2])
    again.load_state_dict(saved)
    for gr in grads:
        for o, (pw, pb) in ((opt, opt.param_groups[0]["params"]), (again, (w2, b2))):
            pw.grad, pb.grad = gr.clone(), torch.ones(10)
            o.step()
    assert torch.equal(opt.param_groups[0]["params"][0], w2)


def test_float64_parameters_cannot_pack_their_state():
    p = torch.nn.Parameter(torch.zeros(N, dtype=torch.float64))
    opt = ours.RMSprop([p], state_storage="int8")
    p.grad = torch.ones(N, dtype=torch.float64)
    with pytest.raises(ValueError, match="packs float32 state"):
        opt.step()


#: torch's signatures with the storage options as keyword-only arguments, against the same
#: optimizer by name (which takes them as any hyperparameter)
CLASSES = {
    "SGD": ("pytorch.sgd", dict(lr=1e-2, momentum=0.9)),
    "Adagrad": ("pytorch.adagrad", dict(lr=1e-2)),
    "Adadelta": ("pytorch.adadelta", dict(lr=1.0)),
    "Adam": ("pytorch.adam", dict(lr=1e-3)),
    "AdamW": ("pytorch.adamw", dict(lr=1e-3)),
    "Yogi": ("pytorch.yogi", dict(lr=1e-2)),
    "RMSpropTF": ("timm.rmsprop", dict(lr=1e-2, momentum=0.9)),
}


@pytest.mark.parametrize("storage", ["bf16", "int8"])
@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_every_optimizer_class_takes_the_storage_options(cls, storage):
    name, hyper = CLASSES[cls]
    options = dict(state_storage=storage, min_8bit_size=0)
    (w, b), opt = run(lambda ps: getattr(ours, cls)(ps, **hyper, **options), steps=5)
    (wn, bn), _ = run(lambda ps: ours.by_name(name, ps, **hyper, **options), steps=5)
    (w32, b32), _ = run(lambda ps: getattr(ours, cls)(ps, **hyper), steps=5)
    assert torch.equal(w, wn) and torch.equal(b, bn)  # the step of the same storage by name
    assert not torch.equal(b, b32)  # the small tensor's state packed too (min_8bit_size=0)
    assert opt.param_groups[0]["state_storage"] == storage


def test_stochastic_rounding_is_an_option_of_the_classes_too():
    make = lambda sr: lambda ps: ours.Adam(ps, lr=1e-3, state_storage="bf16", bf16_stochastic_round=sr)  # noqa: E731
    (w, _), _ = run(make(True), steps=5)
    (wn, _), _ = run(make(False), steps=5)
    assert not torch.equal(w, wn)
    with pytest.raises(ValueError, match="bf16_stochastic_round"):
        ours.Adam(params(), bf16_stochastic_round=True)  # state kept in float32


def held_in(storage, v):
    """Whether the values ``v`` are ones that ``storage`` can hold."""
    if storage == "bf16":
        return torch.equal(v, v.to(torch.bfloat16).to(torch.float32))
    if storage == "int8":  # a block's values: its scale times entries of a 256-entry code
        return all(len(torch.unique(b)) <= 256 and b.abs().max() in b.abs() for b in v.split(256))
    return True


@pytest.mark.parametrize("saved, resumed", [("f32", "int8"), ("int8", "f32"), ("bf16", "int8"), ("int8", "bf16")])
def test_a_checkpoint_is_kept_in_the_storage_of_the_optimizer_that_loads_it(saved, resumed):
    # as bitsandbytes keeps its bits: torch's load_state_dict takes the saved groups'
    # hyperparameters, but how the state is kept stays the loading optimizer's
    make = lambda storage: lambda ps: ours.Adam(ps, lr=1e-3, state_storage=storage)  # noqa: E731
    _, src = run(make(saved), steps=5)
    checkpoint = copy.deepcopy(src.state_dict())
    _, dst = run(make(resumed), steps=0, start=copy.deepcopy(checkpoint))
    assert dst.param_groups[0]["state_storage"] == resumed
    for k in ("exp_avg", "exp_avg_sq"):
        was, now = checkpoint["state"][0][k], dst.state_dict()["state"][0][k]
        assert held_in(resumed, now), k
        if resumed == "f32":
            assert torch.equal(now, was)  # the saved values, decoded, kept whole
        else:  # re-encoded: within the code's spacing of each block's largest magnitude
            assert not torch.equal(now, was), k
            for a, b in zip(now.split(256), was.split(256)):
                assert (a - b).abs().max() <= 0.01 * b.abs().max(), k


def test_state_bytes_count_the_state_as_kept():
    # Adam's two slots; the 10-element bias keeps float32 below min_8bit_size under int8
    per_value = {"f32": 4 * N, "bf16": 2 * N, "int8": N + 4 * -(-N // 256)}
    bias = {"f32": 4 * 10, "bf16": 2 * 10, "int8": 4 * 10}
    for storage in per_value:
        opt = MAKERS["Adam"](storage)(params())
        assert opt.state_bytes() == 0  # no state before a parameter's first step
        _, opt = run(MAKERS["Adam"](storage), steps=1)
        assert opt.state_bytes() == 2 * (per_value[storage] + bias[storage]), storage
