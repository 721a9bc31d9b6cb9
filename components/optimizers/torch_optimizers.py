"""PyTorch's optimisers as components: `@optimizer.adam`, `@optimizer.radam`, ...

The trainer calls the bound class with the parameters to train; every other argument
(lr, betas, weight decay, ...) comes from gin, e.g. `optimizer.radam.lr = 1e-4`. Each is
torch's class with its numeric arguments checked first against their ranges (`RANGES`, and
betas in [0, 1)) and its switches (True or False), so a bad value is a message about it
rather than torch's own error or a run that trains on it.
"""

import inspect

import torch

from flowmap_core import validators
from flowmap_core.registry import register

RANGES = {
    "lr": validators.positive,
    "eps": validators.positive,
    "weight_decay": validators.non_negative,
    "momentum": validators.in_range(0.0, 1.0, high_open=True),
    "dampening": validators.in_range(0.0, 1.0, high_open=True),
}
"""The range of each numeric argument of torch's optimisers that has one (eps = 0 divides
by zero where a parameter's gradient is zero)."""
BETA = validators.in_range(0.0, 1.0, high_open=True)


def _number(value: object) -> object:
    """The number a one-element tensor holds (torch takes lr and weight decay as tensors too), else the value."""
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value


def _validated(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`cls` with its arguments checked; the signature stays torch's, so gin knows every argument.
    `declared_ranges` holds the ranges of the numeric arguments `cls` takes."""
    signature = inspect.signature(cls.__init__)
    ranges = {name: declared for name, declared in RANGES.items() if name in signature.parameters}
    flags = [  # switches like amsgrad, foreach, fused, capturable: True, False (or None: torch decides)
        name
        for name, parameter in signature.parameters.items()
        if isinstance(parameter.default, bool) or name in ("foreach", "fused")
    ]

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        owner = validators.owner(self)
        for name, declared in ranges.items():
            declared.check(f"{owner}.{name}", _number(bound.arguments[name]))
        if "betas" in bound.arguments:
            betas = bound.arguments["betas"]
            if not isinstance(betas, tuple | list) or len(betas) != 2:
                raise TypeError(f"{owner}.betas must be a pair (beta1, beta2) in [0, 1), got {betas!r}")
            for beta in betas:
                BETA.check(f"{owner}.betas", _number(beta))
        for name in flags:
            value = bound.arguments[name]
            if not (isinstance(value, bool) or (value is None and signature.parameters[name].default is None)):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        cls.__init__(self, *args, **kwargs)

    __init__.__signature__ = signature
    namespace = {
        "__init__": __init__,
        "__doc__": cls.__doc__,
        "__module__": __name__,
        "__qualname__": cls.__name__,
        "declared_ranges": ranges,
    }
    return type(cls.__name__, (cls,), namespace)


Adam = _validated(torch.optim.Adam)
AdamW = _validated(torch.optim.AdamW)
RAdam = _validated(torch.optim.RAdam)
SGD = _validated(torch.optim.SGD)

for _name, _cls in {"adam": Adam, "adamw": AdamW, "radam": RAdam, "sgd": SGD}.items():
    register("optimizer", _name)(_cls)
