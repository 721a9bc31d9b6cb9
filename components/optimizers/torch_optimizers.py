"""PyTorch's optimisers as components: `@optimizer.adam`, `@optimizer.radam`, ...

The trainer calls the bound class with the parameters to train; every other argument
(lr, betas, weight decay, ...) comes from gin, e.g. `optimizer.radam.lr = 1e-4`. Each is
torch's class with the learning rate (a positive, finite number) and the switches (True or
False) checked first, so a bad value is a message about it rather than torch's own error.
"""

import inspect
import math
import numbers

import torch

from flowmap_core.registry import register


def check_lr(lr: object) -> None:
    """A learning rate is a positive, finite number (or a tensor holding one)."""
    value = lr.item() if isinstance(lr, torch.Tensor) and lr.numel() == 1 else lr
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"the learning rate must be a positive number, got {lr!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"the learning rate must be a positive, finite number, got {lr!r}")


def _check_number(name: str, value: object, below_one: bool = False) -> None:
    """A finite number >= 0 (and < 1 for rates like momentum and betas)."""
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not 0 <= value < (1 if below_one else math.inf):
        raise ValueError(f"{name} must be in {'[0, 1)' if below_one else '[0, inf)'}, got {value!r}")


def _validated(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`cls` with its `lr` checked; the signature stays torch's, so gin knows every argument."""
    signature = inspect.signature(cls.__init__)
    flags = [  # switches like amsgrad, foreach, fused, capturable: True, False (or None: torch decides)
        name
        for name, parameter in signature.parameters.items()
        if isinstance(parameter.default, bool) or name in ("foreach", "fused")
    ]

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        check_lr(bound.arguments.get("lr"))
        for name in ("eps", "weight_decay", "momentum", "dampening", "alpha"):
            if name in bound.arguments:
                _check_number(name, bound.arguments[name], below_one=name in ("momentum", "dampening"))
        if "betas" in bound.arguments:
            betas = bound.arguments["betas"]
            if not isinstance(betas, tuple | list) or len(betas) != 2:
                raise TypeError(f"betas must be a pair (beta1, beta2) in [0, 1), got {betas!r}")
            for beta in betas:
                _check_number("betas", beta, below_one=True)
        for name in flags:
            value = bound.arguments[name]
            if not (isinstance(value, bool) or (value is None and signature.parameters[name].default is None)):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        cls.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature
    namespace = {"__init__": __init__, "__doc__": cls.__doc__, "__module__": __name__, "__qualname__": cls.__name__}
    return type(cls.__name__, (cls,), namespace)


Adam = _validated(torch.optim.Adam)
AdamW = _validated(torch.optim.AdamW)
RAdam = _validated(torch.optim.RAdam)
SGD = _validated(torch.optim.SGD)

for _name, _cls in {"adam": Adam, "adamw": AdamW, "radam": RAdam, "sgd": SGD}.items():
    register("optimizer", _name)(_cls)
