"""PyTorch's optimisers as components: `@optimizer.adam`, `@optimizer.radam`, ...

The trainer calls the bound class with the parameters to train; every other argument
(lr, betas, weight decay, ...) comes from gin, e.g. `optimizer.radam.lr = 1e-4`.
"""

import torch

from flowmap_core.registry import register

for _name, _cls in {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "radam": torch.optim.RAdam,
    "sgd": torch.optim.SGD,
}.items():
    register("optimizer", _name)(_cls)
