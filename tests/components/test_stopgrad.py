"""Each stop-gradient policy puts the stop-gradient where the objectives document it.

The gradient of each objective under each policy is compared, in float64, with a direct
transcription of the loss that places `.detach()` by hand.
"""

import pytest
import torch

from flowmap_components.objectives.esd import ESD
from flowmap_components.objectives.lsd import LSD
from flowmap_components.objectives.psd import PSD
from flowmap_components.parameterisations.euler import Euler
from flowmap_components.stopgrad.policies import (
    FullStopGradient,
    MeanVelocityStopGradient,
    NoStopGradient,
    TeacherStopGradient,
)
from flowmap_core.flow_map import FlowMap, expand_time
from flowmap_core.protocols import ObjectiveInput
from tests.components.test_parameterisations import random_mlp
from tests.instances import instance

POLICIES = {
    "none": NoStopGradient(),
    "teacher": TeacherStopGradient(),
    "full": FullStopGradient(),
    "mean_velocity": MeanVelocityStopGradient(),
}


def setup(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    net = random_mlp((2,), 1)
    x0, x1 = torch.randn((2, n, 2), generator=g, dtype=torch.float64)
    a, b = torch.rand((2, n), generator=g, dtype=torch.float64)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    X = FlowMap(net=net, parameterisation=Euler())
    inp = ObjectiveInput(
        x0=x0, x1=x1, s=s, t=t, interpolant=instance("interpolant", "linear"), student=X, teacher=X, generator=g
    )
    return net, X, inp


def gradient(net, loss):
    net.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def maybe(x, stop):
    return x.detach() if stop else x


def lsd_by_hand(X, inp, stop):
    xs = (1 - inp.s)[:, None] * inp.x0 + inp.s[:, None] * inp.x1
    Xst, dX = torch.func.jvp(lambda t: X(xs, inp.s, t), (inp.t,), (torch.ones_like(inp.t),))
    target = maybe(X.velocity(maybe(Xst, stop), inp.t), stop)
    return (dX - target).pow(2).mean()


def esd_by_hand(X, inp, stop, stop_transport):
    xs = (1 - inp.s)[:, None] * inp.x0 + inp.s[:, None] * inp.x1
    b = maybe(X.velocity(xs, inp.s), stop)
    _, ds = torch.func.jvp(lambda s: X(xs, s, inp.t), (inp.s,), (torch.ones_like(inp.s),))
    _, transport = torch.func.jvp(lambda x: X(x, inp.s, inp.t), (xs,), (b,))
    return (ds + maybe(transport, stop_transport)).pow(2).mean()


def lsd_mean_velocity_by_hand(X, inp):
    """Only V carries gradient: |V + (t - s) sg(d/dt V) - sg v(sg X)|^2."""
    xs = (1 - inp.s)[:, None] * inp.x0 + inp.s[:, None] * inp.x1
    V, dV = torch.func.jvp(lambda t: X.mean_velocity(xs, inp.s, t), (inp.t,), (torch.ones_like(inp.t),))
    gap = (inp.t - inp.s)[:, None]
    target = X.velocity((xs + gap * V).detach(), inp.t).detach()
    return (V + gap * dV.detach() - target).pow(2).mean()


def esd_mean_velocity_by_hand(X, inp):
    """MeanFlow's form: |V - sg(v + (t - s)(d/ds V + grad V . v))|^2, v the model's own."""
    xs = (1 - inp.s)[:, None] * inp.x0 + inp.s[:, None] * inp.x1
    v = X.velocity(xs, inp.s).detach()
    V, dV = torch.func.jvp(lambda x, s: X.mean_velocity(x, s, inp.t), (xs, inp.s), (v, torch.ones_like(inp.s)))
    target = (v + (inp.t - inp.s)[:, None] * dV).detach()
    return (V - target).pow(2).mean()


def psd_by_hand(X, inp, stop):
    xs = (1 - inp.s)[:, None] * inp.x0 + inp.s[:, None] * inp.x1
    u = (inp.s + inp.t) / 2
    v_su = X.mean_velocity(xs, inp.s, u)
    v_ut = X.mean_velocity(xs + expand_time(u - inp.s, xs) * v_su, u, inp.t)
    target = maybe(0.5 * v_su + 0.5 * v_ut, stop)
    return (X.mean_velocity(xs, inp.s, inp.t) - target).pow(2).mean()


CASES = {
    ("lsd", "none"): lambda X, inp: lsd_by_hand(X, inp, stop=False),
    ("lsd", "teacher"): lambda X, inp: lsd_by_hand(X, inp, stop=True),
    ("lsd", "full"): lambda X, inp: lsd_by_hand(X, inp, stop=True),
    ("esd", "none"): lambda X, inp: esd_by_hand(X, inp, stop=False, stop_transport=False),
    ("esd", "teacher"): lambda X, inp: esd_by_hand(X, inp, stop=True, stop_transport=False),
    ("esd", "full"): lambda X, inp: esd_by_hand(X, inp, stop=True, stop_transport=True),
    ("lsd", "mean_velocity"): lsd_mean_velocity_by_hand,
    ("esd", "mean_velocity"): esd_mean_velocity_by_hand,
    ("psd", "mean_velocity"): lambda X, inp: psd_by_hand(X, inp, stop=True),
    ("psd", "none"): lambda X, inp: psd_by_hand(X, inp, stop=False),
    ("psd", "teacher"): lambda X, inp: psd_by_hand(X, inp, stop=True),
    ("psd", "full"): lambda X, inp: psd_by_hand(X, inp, stop=True),
}
OBJECTIVES = {"lsd": LSD, "esd": ESD, "psd": PSD}


@pytest.mark.parametrize("objective, policy", sorted(CASES))
def test_gradient_matches_hand_placed_stopgrad(objective, policy):
    net, X, inp = setup()
    ours = gradient(net, OBJECTIVES[objective](stopgrad=POLICIES[policy])(inp).per_example.mean())
    by_hand = gradient(net, CASES[objective, policy](X, inp))
    torch.testing.assert_close(ours, by_hand, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_policies_change_the_gradient(objective):
    net, X, inp = setup()
    grads = {
        name: gradient(net, OBJECTIVES[objective](stopgrad=policy)(inp).per_example.mean())
        for name, policy in POLICIES.items()
    }
    assert not torch.allclose(grads["none"], grads["teacher"])
    if objective != "psd":
        assert not torch.allclose(grads["full"], grads["mean_velocity"])
    if objective == "esd":
        assert not torch.allclose(grads["teacher"], grads["full"])


def test_teacher_target_is_evaluated_without_graph():
    net, X, inp = setup()
    x = inp.x0.requires_grad_()
    assert not TeacherStopGradient().target(X.velocity, x, inp.t).requires_grad
    assert NoStopGradient().target(X.velocity, x, inp.t).requires_grad
    assert not FullStopGradient().target_input(x).requires_grad
