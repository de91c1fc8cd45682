"""Every RMSProp flavour as a ``torch.optim.Optimizer``, stepping CPU tensors in place.

``RMSprop`` is ``torch.optim.RMSprop`` (same signature and defaults) unless given another
``flavor``; ``RMSpropTF`` is timm's ``RMSpropTF`` (TensorFlow's RMSProp on PyTorch's
kernels). Each parameter keeps its own state and step count and is skipped while it has no
gradient, as in ``torch.optim``; ``state_dict()`` is in torch's (or timm's) layout, so
checkpoints move between these optimizers and theirs. Learning-rate schedulers work
unchanged: every step reads each group's hyperparameters. bfloat16 and float16 parameters
are stepped in their own storage with their state in float32 (``state_dict()`` too, whole;
torch's optimizers round it to the parameter's dtype when they load it). Every class takes
the keywords ``state_storage="bf16" | "int8"`` (state kept in bfloat16 or block-wise 8-bit
codes; ``state_dict()`` gives it decoded), ``min_8bit_size`` and ``bf16_stochastic_round``.

>>> import torch, rmsprop.torch
>>> w = torch.nn.Parameter(torch.ones(3))
>>> opt = rmsprop.torch.RMSprop([w], lr=0.01)
>>> w.grad = torch.full((3,), 0.5)
>>> opt.step()
>>> round(w[0].item(), 4)  # 1 - 0.01 * 0.5 / (sqrt(0.01 * 0.25) + 1e-8)
0.9
"""

from collections import defaultdict

import torch
from torch.optim import Optimizer

from . import _core

__all__ = ["RMSprop", "RMSpropTF", "SGD", "Adagrad", "Adadelta", "Adam", "AdamW", "Yogi", "by_name", "FLAVORS"]

#: The RMSProp flavours ``RMSprop(..., flavor=...)`` takes.
FLAVORS = ("pytorch", "tf1", "keras", "optax", "mxnet", "d2l", "burn", "timm")

_SUPPORTED = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

# group keys that torch, its schedulers or SWA write and that are not hyperparameters
_NOT_HYPERPARAMETERS = frozenset(
    {
        "params",
        "name",
        "initial_lr",
        "foreach",
        "fused",
        "capturable",
        "differentiable",
        "max_lr",
        "min_lr",
        "base_lr",
        "max_momentum",
        "base_momentum",
        "swa_lr",
        "nonfinite",
        "max_lr_snapshot",
        "param_names",
    }
)


def _state_dtype(dtype):
    """The dtype our state is kept in: float64 for float64 parameters, float32 otherwise
    (a bfloat16 average would lose ``(1 - α) g²`` against itself)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_NAMES = {d: str(d) for d in _SUPPORTED}


def _check(t, what):
    """Refuses ``t`` with a clear error if it cannot be stepped in place."""
    if t.is_sparse or t.layout != torch.strided:
        raise TypeError(f"{what} is sparse ({t.layout}): only dense tensors are stepped")
    if t.device.type != "cpu":
        raise ValueError(f"{what} is on {t.device}: only CPU tensors are stepped (move the model to the CPU)")
    if t.dtype not in _SUPPORTED:
        raise TypeError(f"{what} is {t.dtype}: float32, float64, bfloat16 or float16 are stepped")
    if not t.is_contiguous():
        raise ValueError(
            f"{what} is not contiguous (strides {t.stride()} for shape {tuple(t.shape)}): "
            "stepping a copy would lose the update; make the parameter contiguous"
        )


def _refuse(k, gi, p, g):
    """The error for parameter ``k`` of group ``gi`` or its gradient ``g``."""
    what = f"parameter {k} (group {gi}, shape {tuple(p.shape)})"
    _check(p, what)
    _check(g, f"the gradient of {what}")
    raise TypeError(f"the gradient of {what} is {g.dtype} {tuple(g.shape)}, not {p.dtype} {tuple(p.shape)}")


#: The group keys that say how the state is kept (see ``_storage``).
_STORAGE_KEYS = ("state_storage", "min_8bit_size", "bf16_stochastic_round")


def _storage(state_storage, min_8bit_size, bf16_stochastic_round):
    """The state-storage options given (``None``: the optimizer's default), as the group
    keys the engine takes: ``state_storage`` ``"f32"`` (default), ``"bf16"`` or ``"int8"``
    (block-wise 8-bit codes, bitsandbytes' layout), ``min_8bit_size`` (tensors smaller
    keep float32 state; default 4096, bitsandbytes'), ``bf16_stochastic_round``."""
    given = zip(_STORAGE_KEYS, (state_storage, min_8bit_size, bf16_stochastic_round))
    return {k: v for k, v in given if v is not None}


class _Flavoured(Optimizer):
    """The optimizers' common part: the engine, the step, the state in torch's layout."""

    #: switches of the framework's optimizer we do not have yet: refused when on
    _not_yet = ()
    #: the type of ``state_dict()``'s ``step``: a tensor as torch's optimizers keep it,
    #: ``int`` (torch_optimizer's), or None for none (torch's SGD keeps none)
    _step_type = torch.Tensor

    def __init__(self, params, defaults, optimizer, nonfinite):
        self._engine = _core.Engine(optimizer, nonfinite)
        self._optimizer_name = optimizer
        # what the engine was last given of each group, and each group's checked layouts
        self._configured, self._layouts = {}, {}
        defaults = dict(defaults, nonfinite=nonfinite)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        # refused here, not at the first step, if a value is wrong or a key unknown
        self._engine.configure(len(self.param_groups) - 1, self._hyperparameters(self.param_groups[-1]))

    def _hyperparameters(self, group):
        for k in self._not_yet:
            if group.get(k):
                raise ValueError(f"{k}=True is not supported yet by {type(self).__name__}")
        out = []
        for k, v in group.items():
            if k in _NOT_HYPERPARAMETERS or k in self._not_yet:
                continue
            if k == "betas":  # torch's pair, the crate's two names
                out += [("beta1", v[0]), ("beta2", v[1])]
            elif k == "decoupled_weight_decay":  # torch's Adam switch for AdamW's decay
                out.append(("weight_decay_mode", "decoupled" if v else "coupled"))
            else:
                out.append((k, v))
        return out

    def _tensors(self):
        """``(index, group, parameter)`` over every parameter, numbered as ``state_dict`` does."""
        k = 0
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                yield k, gi, p
                k += 1

    def _configure(self, gi, group):
        """Hands group ``gi``'s hyperparameters to the engine when they changed (a scheduler
        writes ``lr`` between steps): compared as given, each step, in one dict comparison."""
        # a list (betas written as one) is kept as a tuple: changed in place, it differs
        given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in group.items() if k != "params"}
        held = self._configured.get(gi)
        # a tensor value (a scheduler's lr) may change in place: always handed over
        if any(map(torch.is_tensor, given.values())) or held != given:
            self._engine.configure(gi, self._hyperparameters(group))
            self._configured[gi] = given

    def _layout(self, k, gi, p, ptr):
        """Parameter ``p``'s checked layout, ``(p, address, dtype, shape, numel, dtype name)``,
        or the error that says why it cannot be stepped in place."""
        _check(p, f"parameter {k} (group {gi}, shape {tuple(p.shape)})")
        return (p, ptr, p.dtype, p.shape, p.numel(), _NAMES[p.dtype])

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        items, stepped, k = [], [], 0
        layouts = self._layouts
        for gi, group in enumerate(self.param_groups):
            self._configure(gi, group)
            params = group["params"]
            # each parameter's checks are kept while it is the same tensor at the same
            # address, still contiguous; its gradient is checked every step
            held = layouts.get(gi)
            if held is None or held[0] is not params or len(held[1]) != len(params):
                held = layouts[gi] = (params, [None] * len(params))
            seen = held[1]
            for i, p in enumerate(params):
                g = p.grad
                if g is not None:
                    ptr = p.data_ptr()
                    lay = seen[i]
                    if lay is None or lay[0] is not p or lay[1] != ptr or not p.is_contiguous():
                        lay = seen[i] = self._layout(k + i, gi, p, ptr)
                    try:
                        ok = g.dtype is lay[2] and g.is_cpu and g.is_contiguous() and g.shape == lay[3]
                    except RuntimeError:  # a sparse gradient has no contiguity
                        ok = False
                    if not ok:
                        _refuse(k + i, gi, p, g)
                    if lay[4]:
                        items.append((k + i, gi, ptr, g.data_ptr(), lay[4], lay[5]))
                        stepped.append(p)
            k += len(params)
        if self._engine.step(items, torch.get_num_threads()) and stepped:
            # the values changed behind autograd's back: let it see that they did
            torch.autograd.graph.increment_version(stepped)
        return loss

    @property
    def skipped_steps(self):
        """Steps skipped under ``nonfinite="skip"``."""
        return self._engine.skipped_steps

    def state_bytes(self):
        """Bytes of optimizer state held, as kept: 4 a value in float32, 2 in bfloat16, 1 in
        8 bits plus a float32 scale per 256 (a parameter's state exists from its first
        step)."""
        return self._engine.state_bytes()

    def _materialized(self):
        """The state in torch's layout: copies of what the engine holds."""
        state = defaultdict(dict)
        for k, _, p in self._tensors():
            held = self._engine.state_of(k)
            if held is None:
                continue
            step, names = held
            if self._step_type is None:
                entry = {}
            elif self._step_type is int:
                entry = {"step": step}
            else:
                entry = {"step": torch.tensor(float(step))}
            for name in names:
                out = torch.empty(p.numel(), dtype=_state_dtype(p.dtype))
                self._engine.read_state(k, name, out.data_ptr(), p.numel())
                entry[name] = out.view(p.shape)
            if entry:  # torch keeps no state where there is none (SGD without momentum)
                state[p] = entry
        return state

    def state_dict(self):
        own, self.state = self.state, self._materialized()
        try:
            return super().state_dict()
        finally:
            self.state = own

    def load_state_dict(self, state_dict):
        """Loads a ``state_dict`` of this optimizer or of torch's (timm's, ...) own: checked
        whole; a refused one changes nothing, hyperparameters included. How the state is
        kept (``state_storage``, ``min_8bit_size``, ``bf16_stochastic_round``) stays this
        optimizer's, as bitsandbytes keeps its bits: the saved state, given decoded, is
        kept that way (a float32 checkpoint resumed in 8 bits, or an 8-bit one in float32)."""
        groups = self.param_groups
        kept = [{k: g[k] for k in _STORAGE_KEYS if k in g} for g in groups]
        # torch checks the groups and takes their hyperparameters
        super().load_state_dict(state_dict)
        self.state = defaultdict(dict)
        try:
            for group, storage in zip(self.param_groups, kept):
                for k in _STORAGE_KEYS:
                    group.pop(k, None)
                group.update(storage)
            for gi, group in enumerate(self.param_groups):
                self._engine.configure(gi, self._hyperparameters(group))
            held, entries = [], []
            # the state is read from the dict, not from torch's copy cast to each parameter's
            # dtype, so that the float32 state of a bfloat16 parameter loads whole
            given = state_dict["state"]
            for k, gi, p in self._tensors():
                entry = given.get(k)
                if not entry:
                    continue
                step = entry.get("step", 0)
                step = int(step.item() if torch.is_tensor(step) else step)
                values = []
                for name, v in entry.items():
                    if name == "step":
                        continue
                    if not torch.is_tensor(v):
                        raise TypeError(f"state {name} of parameter {k} is a {type(v).__name__}, not a tensor")
                    v = v.detach().to(device="cpu", dtype=_state_dtype(p.dtype)).contiguous().view(-1)
                    if v.numel() != p.numel():
                        raise ValueError(
                            f"state {name} of parameter {k} has {v.numel()} elements, the parameter {p.numel()}"
                        )
                    held.append(v)  # alive until the engine has copied it
                    values.append((name, v.data_ptr()))
                entries.append((k, gi, p.numel(), str(p.dtype), step, values))
            self._engine.load(entries)
        except Exception:
            self.param_groups = groups
            for gi, group in enumerate(groups):
                self._engine.configure(gi, self._hyperparameters(group))
            raise


class RMSprop(_Flavoured):
    """``torch.optim.RMSprop``, or another framework's RMSProp with ``flavor=``.

    With the default ``flavor="pytorch"`` the signature, the defaults and every step are
    torch's. ``flavor="tf1" | "keras" | "optax" | "mxnet" | "d2l" | "burn" | "timm"`` gives
    that framework's semantics and defaults: the arguments given replace them, under
    torch's names or the framework's own (``rho=``, ``decay=``, ``eps_in_sqrt=``, ...).
    ``nonfinite`` is ``"propagate"`` (as torch), ``"skip"`` or ``"error"``.
    """

    _TORCH = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, maximize=False)

    def __init__(
        self,
        params,
        lr=None,
        alpha=None,
        eps=None,
        weight_decay=None,
        momentum=None,
        centered=None,
        capturable=False,
        foreach=None,
        maximize=None,
        differentiable=False,
        *,
        flavor="pytorch",
        nonfinite="propagate",
        **flavor_options,
    ):
        if flavor not in FLAVORS:
            raise ValueError(f"flavor = {flavor!r}: expected one of {', '.join(FLAVORS)}")
        if differentiable:
            raise ValueError("differentiable=True is not supported: the step is not a torch graph")
        given = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered, maximize=maximize
        )
        given = {k: v for k, v in given.items() if v is not None}
        if flavor == "pytorch":
            defaults = dict(self._TORCH, **given)
        else:
            defaults = dict({"lr": dict(_core.preset(f"{flavor}.rmsprop"))["lr"]}, **given)
        defaults.update(flavor_options)
        defaults.update(foreach=foreach, capturable=capturable, differentiable=False)
        super().__init__(params, defaults, f"{flavor}.rmsprop", nonfinite)


class RMSpropTF(_Flavoured):
    """timm's ``RMSpropTF`` (``timm.optim.RMSpropTF``), same signature and defaults.

    TensorFlow's RMSProp as timm writes it on PyTorch's kernels: ε inside the root, the
    average starting at 1 and moved by its increment, the learning rate inside the momentum
    buffer (``lr_in_momentum``), coupled or ``decoupled_decay`` weight decay. (timm's
    ``corrected_weight_decay`` and ``caution`` are refused when on: not yet here.)
    """

    _not_yet = ("corrected_weight_decay", "caution")

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.9,
        eps=1e-10,
        weight_decay=0,
        momentum=0.0,
        centered=False,
        decoupled_decay=False,
        corrected_weight_decay=False,
        lr_in_momentum=True,
        caution=False,
        foreach=None,
        *,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            decoupled_decay=decoupled_decay,
            corrected_weight_decay=corrected_weight_decay,
            lr_in_momentum=lr_in_momentum,
            caution=caution,
            foreach=foreach,
        )
        defaults.update(_storage(state_storage, min_8bit_size, bf16_stochastic_round))
        super().__init__(params, defaults, "timm.rmsprop", nonfinite)


class SGD(_Flavoured):
    """``torch.optim.SGD``: same signature, defaults and steps (momentum, dampening, Nesterov)."""

    _step_type = None

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov, maximize=maximize
        )
        defaults.update(foreach=foreach, fused=fused, **_storage(state_storage, min_8bit_size, bf16_stochastic_round))
        super().__init__(params, defaults, "pytorch.sgd", nonfinite)


class Adagrad(_Flavoured):
    """``torch.optim.Adagrad``: same signature, defaults and steps."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        differentiable=False,
        fused=None,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        defaults.update(foreach=foreach, fused=fused, **_storage(state_storage, min_8bit_size, bf16_stochastic_round))
        super().__init__(params, defaults, "pytorch.adagrad", nonfinite)


class Adadelta(_Flavoured):
    """``torch.optim.Adadelta``: same signature, defaults and steps."""

    def __init__(
        self,
        params,
        lr=1.0,
        rho=0.9,
        eps=1e-6,
        weight_decay=0,
        foreach=None,
        *,
        capturable=False,
        maximize=False,
        differentiable=False,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        defaults.update(foreach=foreach, **_storage(state_storage, min_8bit_size, bf16_stochastic_round))
        super().__init__(params, defaults, "pytorch.adadelta", nonfinite)


class Adam(_Flavoured):
    """``torch.optim.Adam``: same signature, defaults and steps (``amsgrad``,
    ``decoupled_weight_decay``)."""

    _optimizer = "pytorch.adam"

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        defaults.update(foreach=foreach, fused=fused, **_storage(state_storage, min_8bit_size, bf16_stochastic_round))
        super().__init__(params, defaults, self._optimizer, nonfinite)


class AdamW(Adam):
    """``torch.optim.AdamW``: same signature, defaults (weight decay 0.01) and steps."""

    _optimizer = "pytorch.adamw"

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        fused=None,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            decoupled_weight_decay=True,  # as torch's AdamW, an Adam with this switch on
            nonfinite=nonfinite,
            state_storage=state_storage,
            min_8bit_size=min_8bit_size,
            bf16_stochastic_round=bf16_stochastic_round,
        )


class Yogi(_Flavoured):
    """Yogi as PyTorch users know it, ``torch_optimizer.Yogi`` (torch has none): same
    signature, defaults and steps (moments from ``initial_accumulator``, coupled
    ``weight_decay``, torch's Adam bias correction); ``state_dict()`` in its layout."""

    _step_type = int

    def __init__(
        self,
        params,
        lr=1e-2,
        betas=(0.9, 0.999),
        eps=1e-3,
        initial_accumulator=1e-6,
        weight_decay=0,
        *,
        nonfinite="propagate",
        state_storage=None,
        min_8bit_size=None,
        bf16_stochastic_round=None,
    ):
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, initial_accumulator=initial_accumulator, weight_decay=weight_decay
        )
        defaults.update(_storage(state_storage, min_8bit_size, bf16_stochastic_round))
        super().__init__(params, defaults, "pytorch.yogi", nonfinite)


class _ByName(_Flavoured):
    def __init__(self, name, params, nonfinite, hyper):
        lr = dict(_core.preset(name))["lr"]
        super().__init__(params, dict({"lr": lr}, **hyper), name, nonfinite)


def by_name(name, params, *, nonfinite="propagate", **hyperparameters):
    """Any optimizer of any flavour by its name (``"keras.rmsprop"``, ``"optax.adam"``,
    ``"mxnet.sgd"``, ...), hyperparameters under any framework's spelling; unknown names and
    keys are refused with what was meant.

    >>> import torch, rmsprop.torch
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> opt = rmsprop.torch.by_name("keras.rmsprop", [w], rho=0.8)
    >>> opt.param_groups[0]["lr"], opt.param_groups[0]["rho"]
    (0.001, 0.8)
    """
    return _ByName(name, params, nonfinite, hyperparameters)
