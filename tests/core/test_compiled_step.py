"""The whole loss compiles (`train.compile = 'step'`) and equals the eager loss.

For every method's smoke config (each registered objective appears in one), with every
derivative bound to the explicit tangent pass: `torch.compile(fullgraph=True)` traces the
weighted objective, derivatives included, and its loss and gradients equal eager's. The
sweep compiles with the `aot_eager` backend (Dynamo and AOT autograd: where forward-mode
AD fails) to keep the suite fast; one LSD run compiles with inductor through the trainer.
A strategy that cannot compile (forward-mode AD) falls back to the backbone in one line,
and leaves no forward-mode level open.
"""

import attrs
import pytest
import torch
from torch import nn

from flowmap_components.backbones.mlp import MLP
from flowmap_core import config, registry, runs
from flowmap_core.trainer import Trainer, TrainingError
from tests.core.test_gin_files import SMOKE_TEACHERS

METHODS = [
    f"checkerboard_{method}"
    for method in [
        "fm",
        "lsd",
        "esd",
        "psd_m",
        "psd_u",
        "meanflow",
        "consistency_training",
        "consistency_distillation",
        "sct",
        "shortcut",
        "lagrangian_distillation",
        "progressive_flow_map_matching",
    ]
] + ["gaussian_mixture_guided_lsd"]
WEIGHTED_SUM = [
    "train.objective = @objective.weighted_sum()",
    "objective.weighted_sum.terms = (@objective.split(), @objective.psd())",
    "objective.weighted_sum.weights = (1.0, 0.5)",
]
FAULT = ["train.objective = @objective.fault()", "objective.fault.objective = @objective.split()"]  # no fault set
CASES = {name: (name, []) for name in METHODS} | {
    "weighted_sum": ("checkerboard_lsd", WEIGHTED_SUM),
    "fault": ("checkerboard_lsd", FAULT),
}


def trainer_of(name: str, *bindings: str) -> Trainer:
    config.parse(
        [f"smoke/{name}.gin"],
        [*SMOKE_TEACHERS, *config.derivative_bindings("tangent_pass"), "train.batch_size = 16", *bindings],
    )
    return Trainer(runs.build_spec(), progress=False)


def loss_and_gradients(trainer: Trainer, loss_fn, inputs, uniforms):
    trainer.optimizer.zero_grad(set_to_none=True)
    loss, _ = loss_fn(inputs, uniforms)
    loss.backward()
    return loss.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in trainer.parameters]


def test_every_registered_objective_is_covered():
    covered = set()
    for name, bindings in CASES.values():
        config.parse([f"smoke/{name}.gin"], [*SMOKE_TEACHERS, *bindings])
        covered |= {
            type(p).registry_name
            for p in registry.parts(runs.build_spec().objective)
            if getattr(type(p), "registry_family", None) == "objective"
        }
    assert set(registry.names("objective")) <= covered, set(registry.names("objective")) - covered


@pytest.mark.parametrize("case", CASES)
def test_compiled_loss_equals_eager(case):
    name, bindings = CASES[case]
    trainer = trainer_of(name, *bindings)
    inputs = trainer.draw()
    uniforms = torch.rand(len(inputs.x0), dtype=trainer.dtype)
    torch._dynamo.reset()
    compiled = torch.compile(trainer._weighted_objective, fullgraph=True, backend="aot_eager")
    eager_loss, eager_grads = loss_and_gradients(trainer, trainer._weighted_objective, inputs, uniforms)
    compiled_loss, compiled_grads = loss_and_gradients(trainer, compiled, inputs, uniforms)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-7)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)
    assert eager_loss.item() > 0 and any(g.abs().sum() > 0 for g in eager_grads)


def test_inductor_step_trains_as_eager():
    """The trainer's compiled step (inductor) takes the steps the eager trainer takes, to float tolerance."""
    losses = {}
    for mode in ("none", "step"):
        torch._dynamo.reset()
        trainer = trainer_of("checkerboard_lsd", f"train.compile = '{mode}'", "train.steps = 3")
        assert trainer.compile == mode
        losses[mode] = [trainer.optimise(trainer.draw()).loss.item() for _ in range(3)]
    assert losses["step"] == pytest.approx(losses["none"], rel=1e-4)


def test_forward_ad_falls_back_to_the_backbone_in_one_line(capsys):
    torch._dynamo.reset()
    config.parse(
        ["smoke/checkerboard_lsd.gin"],
        ["train.compile = 'step'", "objective.lsd.derivative = @derivative.forward_ad()"],
    )
    trainer = Trainer(runs.build_spec(), progress=False)
    assert trainer.compile == "backbone"
    said = [line for line in capsys.readouterr().err.splitlines() if "train.compile" in line]
    assert len(said) == 1 and "derivative.forward_ad cannot be compiled whole" in said[0]
    result = trainer.optimise(trainer.draw())
    assert torch.isfinite(result.loss)
    _, tangent = torch.func.jvp(torch.sin, (torch.zeros(3),), (torch.ones(3),))  # no dual level left open
    assert torch.equal(tangent, torch.ones(3))


class WithoutTangent(nn.Module):
    """An MLP behind a module of the user's that has no tangent pass."""

    def __init__(self, **kwargs):
        super().__init__()
        self.mlp = MLP(**kwargs)

    def forward(self, x, s, t, **cond):
        return self.mlp(x, s, t, **cond)


def test_tangent_pass_without_a_backbone_tangent_is_one_error():
    config.parse(["smoke/checkerboard_lsd.gin"], ["objective.lsd.derivative = @derivative.tangent_pass()"])
    spec = attrs.evolve(runs.build_spec(), backbone=WithoutTangent)
    with pytest.raises(TrainingError, match="derivative.tangent_pass: the backbone WithoutTangent has no explicit"):
        Trainer(spec, progress=False)
