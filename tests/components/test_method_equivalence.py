"""Each known method, assembled from its gin file, computes its paper's loss.

For every method the loss of the gin-assembled trainer and an independent, direct
transcription of the published loss (written here from the paper's equations) are
evaluated on the same random network, data, noise and times in float64, and must agree
to 1e-10, in value and in gradient (which checks where the stop-gradients sit).

Time conventions: this library runs time from noise (0) to data (1), x_s = (1 - s) x0 + s x1.
- Shortcut models use the same convention; their s(x_t, t, d) is our V_{t, t+d}(x_t).
- MeanFlow runs time from data (0) to noise (1), z_t = (1 - t) x + t eps: its (t, r) are
  our (1 - s, 1 - t), its u(z, r, t) is our -V_{1-t, 1-r}(z) and its v = eps - x is -dx_s/ds.
- Consistency models use noise levels sigma, x_sigma = x + sigma z: our x_s is s x_sigma with
  s = 1 / (1 + sigma), so their f(x_sigma, sigma) is our X_{s,1}(s x_sigma).
- sCM (TrigFlow) runs time t from data (0) to noise (pi / 2), x_t = cos(t) x + sin(t) z with
  z ~ N(0, sigma_d^2): with our data x1 = x / sigma_d and noise x0 = z / sigma_d, our x_s is
  x_t / sigma_d at s = 1 - 2 t / pi, and F_theta(x_t / sigma_d, t) is our backbone's head at (x_s, s).
"""

import functools
import math
from pathlib import Path

import attrs
import pytest
import torch

from flowmap_components.interpolants.linear import Linear
from flowmap_components.time_samplers.consistency import ConsistencySchedule
from flowmap_core import cli, config, runs
from flowmap_core.protocols import Draw
from flowmap_core.trainer import Trainer

CPU = torch.device("cpu")
TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Stage-one runs: a flow-matching velocity and an LSD flow map (smoke budgets)."""
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for name in ["fm", "lsd"]:
        out[name] = root / name
        smoke = str(config.GIN_DIR / "smoke" / f"checkerboard_{name}.gin")
        assert cli.main(["train", smoke, "--run-dir", str(out[name]), "--no-progress", "--no-eval"]) == 0
    return out


def assemble(method: str, bindings=()) -> Trainer:
    """The trainer of gin/methods/<method>.gin on the checkerboard, small, in float64."""
    config.parse(
        ["base/train.gin", "datasets/checkerboard.gin", f"methods/{method}.gin"],
        [
            "train.steps = 1000",
            "train.batch_size = 64",
            "train.dtype = 'float64'",
            "train.device = 'cpu'",
            "backbone.mlp.width = 32",
            "backbone.mlp.depth = 2",
            *bindings,
        ],
    )
    trainer = Trainer(runs.build_spec(), progress=False)
    torch.nn.init.normal_(trainer.net.out.weight, std=0.3)  # not the zero-initialised identity map
    torch.nn.init.normal_(trainer.net.out.bias, std=0.3)
    trainer.step = 400  # mid-run, so step-dependent schedules are not at their start
    return trainer


def compare(trainer: Trainer, transcription) -> None:
    """Loss value and gradient of the assembled objective against the transcription."""
    inputs = trainer.draw()
    params = list(trainer.net.parameters())
    ours, _ = trainer.loss(inputs)
    ours_grad = torch.autograd.grad(ours, params)
    theirs = transcription(trainer.net, inputs)
    theirs_grad = torch.autograd.grad(theirs, params)
    torch.testing.assert_close(ours, theirs, **TOL)
    for a, b in zip(ours_grad, theirs_grad, strict=True):
        torch.testing.assert_close(a, b, **TOL)


def V(net, x, s, t):
    """The Euler parameterisation's mean velocity: the backbone's output."""
    return net(x, s, t)[:, 0]


def test_shortcut_model_loss():
    """Frans et al. (2024), Eq. 5: ||s(x_t, t, 0) - (x1 - x0)||^2 on the flow-matching share,
    ||s(x_t, t, 2d) - sg(s'(x_t, t, d) / 2 + s'(x'_{t+d}, t + d, d) / 2)||^2, x'_{t+d} = x_t + d s'(x_t, t, d),
    on the rest, s' the EMA weights (the official bootstrap_ema); the batch mean of the
    per-element mean squares."""
    trainer = assemble("shortcut")
    ema = trainer.ema_nets()["ema_0.999"]
    torch.nn.init.normal_(ema.out.weight, std=0.3)  # a teacher that differs from the student
    torch.nn.init.normal_(ema.out.bias, std=0.3)

    def s_model(net, x, t, d):
        return V(net, x, t, t + d)

    def published(net, inputs):
        x0, x1, t = inputs.x0, inputs.batch.x1, inputs.times.s
        two_d = inputs.times.t - inputs.times.s
        k = inputs.times.n_diagonal
        xt = (1 - t)[:, None] * x0 + t[:, None] * x1
        flow = (s_model(net, xt[:k], t[:k], two_d[:k]) - (x1 - x0)[:k]).pow(2).mean(1)
        d = two_d[k:] / 2
        x, tk = xt[k:], t[k:]
        with torch.no_grad():
            first = s_model(ema, x, tk, d)
            second = s_model(ema, x + d[:, None] * first, tk + d, d)
            target = first / 2 + second / 2
        shortcut = (s_model(net, x, tk, 2 * d) - target).pow(2).mean(1)
        return torch.cat([flow, shortcut]).mean()

    compare(trainer, published)


def test_shortcut_model_times():
    """kvfrans/shortcut-models, targets_shortcut.py: one row in bootstrap_every = 8 is
    self-consistency; its full step dt = 2d is 2^-k, k in 0..6, and its start t is on the
    full-step grid, t = randint(0, 1/dt) dt."""
    trainer = assemble("shortcut")
    generator = torch.Generator().manual_seed(0)
    pairs = trainer.spec.time_sampler(
        Draw(n=65536, step=0, total_steps=1, generator=generator, device=CPU, dtype=torch.float64)
    )
    k = pairs.n_diagonal
    assert k == 65536 * 7 // 8
    step = (pairs.t - pairs.s)[k:]
    exponent = -torch.log2(step)
    assert torch.equal(exponent, exponent.round()) and set(exponent.tolist()) == set(range(7))
    slot = pairs.s[k:] / step
    assert torch.equal(slot, slot.round()), "s is a multiple of the full step"
    for e in range(7):  # every start on the grid occurs
        assert len(torch.unique(slot[exponent == e])) == 2**e


def test_meanflow_loss():
    """Geng et al. (2025), Eqs. 9-10 and the adaptive weight: u_tgt = v - (t - r)(v d_z u + d_t u)
    by a JVP along (v, 0, 1) in (z, r, t); L = sg(w) ||u(z_t, r, t) - sg(u_tgt)||^2 with
    w = 1 / (||.||^2 + c)^p (norms summed over dimensions)."""
    trainer = assemble("meanflow")
    p = trainer.spec.weighting.power
    dims = 2
    c = trainer.spec.weighting.offset * dims  # our per-example loss is the mean over dimensions

    def published(net, inputs):
        eps, x = inputs.x0, inputs.batch.x1
        t_mf, r_mf = 1 - inputs.times.s, 1 - inputs.times.t

        def u(z, r, t):
            return -V(net, z, 1 - t, 1 - r)

        z = (1 - t_mf)[:, None] * x + t_mf[:, None] * eps
        v = eps - x
        u_pred, du_dt = torch.func.jvp(u, (z, r_mf, t_mf), (v, torch.zeros_like(r_mf), torch.ones_like(t_mf)))
        u_target = (v - (t_mf - r_mf)[:, None] * du_dt).detach()
        error = (u_pred - u_target).pow(2).sum(1)
        weight = 1 / (error.detach() + c) ** p
        return (weight * error).mean() / dims ** (1 - p)

    compare(trainer, published)


def test_the_hand_written_meanflow_control_is_the_experiments_loss():
    """tools/minimal_meanflow.py, the control for the checkerboard MeanFlow experiment,
    computes the experiment's loss (p = 0: the plain squared loss) in MeanFlow's own time;
    its per-example loss sums over dimensions where ours averages."""
    import importlib.util

    tool = Path(__file__).resolve().parents[2] / "tools" / "minimal_meanflow.py"
    spec = importlib.util.spec_from_file_location("minimal_meanflow", tool)
    minimal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(minimal)
    trainer = assemble("meanflow", ["train.weighting = @weighting.uniform()"])

    def control(net, inputs):
        def u(z, r, t):
            return -V(net, z, 1 - t, 1 - r)

        r_mf, t_mf = 1 - inputs.times.t, 1 - inputs.times.s
        return minimal.loss_fn(u, inputs.batch.x1, inputs.x0, r_mf, t_mf) / 2

    compare(trainer, control)


def test_shortcut_model_drops_labels_on_flow_matching_rows_only():
    """targets_shortcut.py: labels are dropped (to the null class) on the flow-matching rows;
    the bootstrap rows keep theirs."""
    bindings = ["train.dataset = @dataset.gaussian_mixture()", "train.conditioning = @conditioning.class_label()"]
    trainer = assemble("shortcut", bindings)
    inputs = trainer.draw()
    k, label, given = inputs.times.n_diagonal, inputs.cond["label"], inputs.batch.label
    assert torch.equal(label[k:], given[k:])
    assert (label[:k] == -1).any() and torch.equal(label[:k][label[:k] != -1], given[:k][label[:k] != -1])


def sigma_of(s):
    return (1 - s) / s


def f_consistency(net, y, sigma):
    """Song et al.'s consistency function on x_sigma = x + sigma z, from our single-time map."""
    s = 1 / (1 + sigma)
    x = s[:, None] * y
    return x + (1 - s)[:, None] * net(x, s, torch.ones_like(s))[:, 0]


def test_consistency_training_loss():
    """Song & Dhariwal (2023), iCT: lambda(sigma_n) d(f(x + sigma_{n+1} z, sigma_{n+1}), f_sg(x + sigma_n z, sigma_n))
    with d the pseudo-Huber distance sqrt(|.|^2 + c^2) - c (c = 0.00054 sqrt(D), norms summed over
    dimensions), lambda = 1 / (sigma_{n+1} - sigma_n) and the teacher sg(theta)."""
    trainer = assemble("consistency_training")
    c = 0.00054 * math.sqrt(2)

    def published(net, inputs):
        x, z = inputs.batch.x1, inputs.x0
        sigma_next, sigma_n = sigma_of(inputs.times.s), sigma_of(inputs.times.u)
        student = f_consistency(net, x + sigma_next[:, None] * z, sigma_next)
        with torch.no_grad():
            teacher = f_consistency(net, x + sigma_n[:, None] * z, sigma_n)
        distance = torch.sqrt((student - teacher).pow(2).sum(1) + c**2) - c
        return (distance / (sigma_next - sigma_n)).mean()

    compare(trainer, published)


def test_consistency_training_schedule():
    """Song et al. (2023), Appendix C: N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 and
    Karras levels; the sampler's (s, u) are adjacent levels."""
    schedule = ConsistencySchedule(initial_levels=2, final_levels=150)
    K = 10_000
    for k in [0, 1, 2500, 5000, 9999, 10_000]:
        expected = math.ceil(math.sqrt(k / K * ((150 + 1) ** 2 - 2**2) + 2**2) - 1) + 1
        assert schedule.levels(k, K) == expected
    N = schedule.levels(5000, K)
    i = torch.arange(1, N + 1, dtype=torch.float64)
    karras = (0.002 ** (1 / 7) + (i - 1) / (N - 1) * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    torch.testing.assert_close(schedule.sigmas(N, torch.float64), karras)
    generator = torch.Generator().manual_seed(0)
    request = Draw(n=4096, step=5000, total_steps=K, generator=generator, device=CPU, dtype=torch.float64)
    pairs = schedule(attrs.evolve(request, interpolant=Linear()))
    index = (karras[None, :] - sigma_of(pairs.u)[:, None]).abs().argmin(dim=1)
    torch.testing.assert_close(karras[index], sigma_of(pairs.u))
    torch.testing.assert_close(karras[index + 1], sigma_of(pairs.s))
    assert (pairs.t == 1).all()


def test_improved_consistency_training_schedule():
    """Song & Dhariwal (2023), iCT: N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1)),
    and level n drawn with p(n) proportional to erf((ln sigma_{n+1} - P_mean) / (sqrt 2 P_std))
    - erf((ln sigma_n - P_mean) / (sqrt 2 P_std)); the config's schedule is that one."""
    trainer = assemble("consistency_training")
    schedule = trainer.spec.time_sampler
    K = 16_000
    period = K // 8  # log2(1280 / 10) + 1 = 8
    for k in [0, period - 1, period, 3 * period + 5, 7 * period, K]:
        assert schedule.levels(k, K) == min(10 * 2 ** (k // period), 1280) + 1
    N = schedule.levels(2 * period, K)
    sigmas = schedule.sigmas(N, torch.float64)
    cdf = torch.special.erf((sigmas.log() + 1.1) / (math.sqrt(2) * 2.0))
    expected = (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])
    generator = torch.Generator().manual_seed(0)
    n = 200_000
    request = Draw(n=n, step=2 * period, total_steps=K, generator=generator, device=CPU, dtype=torch.float64)
    pairs = schedule(attrs.evolve(request, interpolant=Linear()))
    index = (sigmas[None, :] - sigma_of(pairs.u)[:, None]).abs().argmin(dim=1)
    torch.testing.assert_close(sigmas[index + 1], sigma_of(pairs.s))
    frequency = torch.bincount(index, minlength=N - 1).double() / n
    assert (frequency - expected).abs().max() < 0.005


def test_consistency_distillation_loss(teachers):
    """Song et al. (2023), Eq. 7 with an Euler step of the pretrained probability-flow ODE in
    the interpolant's time: x_hat_u = x_s + (u - s) b(x_s, s); E ||f(x_s) - f_sg(x_hat_u)||^2."""
    trainer = assemble("consistency_distillation", [f"velocity.pretrained.run_dir = '{teachers['fm']}'"])
    velocity = trainer.spec.objective.velocity._flow
    assert [trainer.spec.time_sampler.levels(k, 1000) for k in (0, 1, 400, 1000)] == [18] * 4  # the fixed N = 18

    def published(net, inputs):
        x, z = inputs.batch.x1, inputs.x0
        s, u = inputs.times.s, inputs.times.u
        xs = (1 - s)[:, None] * z + s[:, None] * x
        with torch.no_grad():
            x_hat = xs + (u - s)[:, None] * velocity.net(xs, s, s)[:, 0]
            teacher = f_consistency(net, x_hat / u[:, None], sigma_of(u))
        student = f_consistency(net, xs / s[:, None], sigma_of(s))
        return (student - teacher).pow(2).mean(1).mean()

    compare(trainer, published)


def test_lagrangian_map_distillation_loss(teachers):
    """Boffi et al. (2024), LMD: E ||d/dt X_{s,t}(x_s) - b_t(X_{s,t}(x_s))||^2 with b the frozen
    stage-one velocity, differentiated through its argument."""
    trainer = assemble("lagrangian_distillation", [f"velocity.pretrained.run_dir = '{teachers['fm']}'"])
    b = trainer.spec.objective.velocity._flow.net

    def published(net, inputs):
        s, t = inputs.times.s, inputs.times.t
        xs = (1 - s)[:, None] * inputs.x0 + s[:, None] * inputs.batch.x1

        def X(tau):
            return xs + (tau - s)[:, None] * V(net, xs, s, tau)

        Xst, dX_dt = torch.func.jvp(X, (t,), (torch.ones_like(t),))
        return (dX_dt - b(Xst, t, t)[:, 0]).pow(2).mean(1).mean()

    compare(trainer, published)


def test_progressive_flow_map_matching_loss(teachers):
    """Boffi et al. (2024), PFMM with two jumps: E ||X_{s,t}(x_s) - X'_{u,t}(X'_{s,u}(x_s))||^2,
    X' the frozen stage-one map, u the midpoint."""
    trainer = assemble("progressive_flow_map_matching", [f"teacher.pretrained.run_dir = '{teachers['lsd']}'"])
    teacher = trainer.teacher

    def published(net, inputs):
        s, t = inputs.times.s, inputs.times.t
        u = (s + t) / 2
        xs = (1 - s)[:, None] * inputs.x0 + s[:, None] * inputs.batch.x1
        with torch.no_grad():
            target = teacher(teacher(xs, s, u), u, t)
        student = xs + (t - s)[:, None] * V(net, xs, s, t)
        return (student - target).pow(2).mean(1).mean()

    compare(trainer, published)


SIGMA_D, TANGENT_C = 0.5, 0.1  # sCM's CIFAR-10 settings, in x_t's units


def scm_published(net, inputs, dx_dt_of, step, warmup=10_000):
    """Lu & Song (2024), Algorithm 1, in x_t's units: x_t = cos(t) x + sin(t) z, z ~ N(0, sigma_d^2 I);
    g = -cos^2(t) (sigma_d F- - dx_t/dt) - r cos(t) sin(t) (x_t + sigma_d dF-/dt), dF-/dt the derivative
    of F_theta-(x_t / sigma_d, t) along the trajectory (one JVP along (dx_t/dt, 1)), r = min(1, step / H);
    g / (|g| + c); the loss |F_theta - F_theta- - g|^2 / D (adaptive weight w = 0), batch mean."""
    x, z = SIGMA_D * inputs.batch.x1, SIGMA_D * inputs.x0
    t = math.pi / 2 * (1 - inputs.times.s)
    cos, sin = torch.cos(t)[:, None], torch.sin(t)[:, None]
    xt = cos * x + sin * z

    def F(x_t, tau):
        return net(x_t / SIGMA_D, 1 - 2 * tau / math.pi, torch.ones_like(tau))[:, 0]

    r = min(1.0, step / warmup)
    with torch.no_grad():
        dx_dt = dx_dt_of(x, z, xt, t)
        F_minus, dF_dt = torch.func.jvp(F, (xt, t), (dx_dt, torch.ones_like(t)))
        g = -(cos**2) * (SIGMA_D * F_minus - dx_dt) - r * cos * sin * (xt + SIGMA_D * dF_dt)
        g = g / (g.norm(dim=1, keepdim=True) + TANGENT_C)
    return (F(xt, t) - F_minus - g).pow(2).mean(1).mean()


def pair_velocity(x, z, xt, t):
    """sCT's dx_t/dt = cos(t) z - sin(t) x, the pair's."""
    return torch.cos(t)[:, None] * z - torch.sin(t)[:, None] * x


def test_sct_loss():
    """sCT, mid warm-up (step 400 of 10,000: r = 0.04) and after it (r = 1)."""
    trainer = assemble("sct", ["train.weighting = @weighting.uniform()"])
    for step in (400, 20_000):
        trainer.step = step
        compare(trainer, functools.partial(scm_published, dx_dt_of=pair_velocity, step=step))


def test_scd_loss(teachers):
    """sCD: dx_t/dt = sigma_d F_pretrain(x_t / sigma_d, t), the pretrained velocity in TrigFlow's time:
    our b(x_s, s) is d(x_t / sigma_d)/ds, and ds/dt = -2 / pi."""
    trainer = assemble(
        "scd", [f"velocity.pretrained.run_dir = '{teachers['fm']}'", "train.weighting = @weighting.uniform()"]
    )
    b = trainer.spec.objective.velocity._flow.net

    def dx_dt(x, z, xt, t):
        s = 1 - 2 * t / math.pi
        return SIGMA_D * (-2 / math.pi) * b(xt / SIGMA_D, s, s)[:, 0]

    compare(trainer, functools.partial(scm_published, dx_dt_of=dx_dt, step=400))
