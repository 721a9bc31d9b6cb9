"""Time a training step: each objective against flow matching, beside its FLOP and op counts.

    python tools/bench_step.py [--steps 60] [--rounds 5] [--config experiments/checkerboard_lsd.gin]
                               [--variant 'BINDING[; BINDING]' ...]
    python tools/bench_step.py --dataset fashion_mnist [--methods fm lsd esd psd_m] [--gin BINDING ...]
                               [--compile none step] [--derivative forward_ad tangent_pass ...] [--profile]

Two tables, both measured in this one process, so machine load cancels in the ratios
(a third with --variant):

1. step cost of each method's experiment (`gin/experiments/<dataset>_<method>.gin`, or
   base + `datasets/<dataset>.gin` + `methods/<method>.gin` where there is none) relative
   to the fastest flow-matching row, with the ideal beside it: the step's FLOPs relative
   to FM's (`torch.utils.flop_counter.FlopCounterMode` over one eager
   `Trainer.optimise(Trainer.draw())`: forward, tangent and backward), time over FLOP
   ratio (1.0: the step costs what its arithmetic does), and the aten ops dispatched per
   step (a `TorchDispatchMode` count: the host-side proxy of GPU kernel launches; a
   compiled step dispatches only what inductor leaves outside its fused kernels).
   `--gin` bindings apply to every method (e.g. another shard URL, batch or precision);
   each method runs under every `--compile` mode (`train.compile`; the first steps, which
   compile, are warm-up) and, with `--derivative`, also with every objective's
   derivative bound to each named strategy (default: the config's own); `--profile` adds
   where each row's time goes (self CPU time by kind of op: fused kernels, convolutions
   forward and backward, matrix products, the optimiser);
2. the framework tax: the gin-wired `Trainer.optimise(Trainer.draw())` of `--config`
   (eager, forward-mode AD) against a minimal hand-written loop doing the same math (same network module,
   same data and time sampling, flow matching on half the batch, LSD with a frozen
   teacher on the other half, Adam, gradient clipping, cosine schedule, EMA). Before
   timing, both compute the loss on identical inputs to show they agree. (Checkerboard
   only: the minimal loop is written for its 2D data.)

3. with `--variant`, the step of `--config` with each variant's bindings (separated by
   ';') against the step of `--config` as is: what a change of network, batch or
   optimiser costs before you train with it.

Timings interleave the contenders in rounds and report the median step time of each.
"""

import argparse
import copy
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from flowmap_core import config, registry, report
from flowmap_core.protocols import Batch, TimeSample
from flowmap_core.timing import build, median_step_times, step_of
from flowmap_core.trainer import StepInput, Trainer

METHODS = ["fm", "lsd", "esd", "psd_m", "psd_u"]


def method_config(dataset: str, method: str) -> list[str]:
    """The gin files of `method` on `dataset`: its experiment, else base + dataset + method."""
    experiment = f"experiments/{dataset}_{method}.gin"
    if (config.GIN_DIR / experiment).is_file():
        return [experiment]
    return ["base/train.gin", f"datasets/{dataset}.gin", f"methods/{method}.gin"]


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def flops_of_step(trainer: Trainer) -> float:
    """FLOPs of one training step (forward, tangent and backward), counted eagerly."""
    with FlopCounterMode(display=False) as counter:
        trainer.optimise(trainer.draw())
    return float(counter.get_total_flops())


def ops_of_step(trainer: Trainer) -> int | None:
    """Aten ops dispatched by one eager training step (None for a compiled step: torch.compile
    does not run under a user's dispatch mode)."""
    if trainer.compile != "none":
        return None
    with OpCounter() as counter:
        trainer.optimise(trainer.draw())
    return counter.count


PROFILE_GROUPS = [
    ("inductor fused kernels", lambda name: "cpp_fused" in name or "triton_" in name),
    ("convolution backward", lambda name: "convolution_backward" in name),
    ("convolution forward", lambda name: "convolution" in name or "mkldnn" in name),
    ("matrix products", lambda name: name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("optimiser", lambda name: "Optimizer" in name or "_foreach" in name),
]
"""Where a step's time goes: each op's self time joins the first group whose test its name passes."""


def time_by_group(trainer: Trainer, steps: int = 5) -> tuple[float, dict[str, float]]:
    """Self CPU ms per step in all, and in each of `PROFILE_GROUPS`, over `steps` profiled steps."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            trainer.optimise(trainer.draw())
    groups = dict.fromkeys([name for name, _ in PROFILE_GROUPS], 0.0)
    total = 0.0
    for event in profile.key_averages():
        ms = event.self_cpu_time_total / steps / 1000
        total += ms
        group = next((name for name, test in PROFILE_GROUPS if test(event.key)), None)
        if group is not None:
            groups[group] += ms
    return total, groups


def kernels_of_step(trainer: Trainer) -> int:
    """Kernels one training step runs, from torch.profiler: aten ops that call no other aten op,
    plus inductor's fused kernels (recorded with `cpp.enable_kernel_profile`)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        trainer.optimise(trainer.draw())
    count = 0
    for event in profile.events():
        if "cpp_fused" in event.name or "triton_" in event.name:
            count += 1
        elif event.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in event.cpu_children):
            count += 1
    return count


class MinimalLoop:
    """The LSD experiment's step written by hand, without the framework's abstractions: half
    the batch on the diagonal, a quarter of pairs with the triangle's gap density, a quarter
    with a uniform gap opening from 0.1 to 1 over 1500 steps, every time shifted toward the
    data by u -> 2 u / (1 + u), Adam with the config's lr and betas (gin/experiments/checkerboard_lsd.gin)."""

    def __init__(self, trainer: Trainer):
        spec = trainer.spec
        self.net = copy.deepcopy(trainer.net)
        self.ema = copy.deepcopy(trainer.net).requires_grad_(False)
        betas = trainer.optimizer.defaults["betas"]
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=trainer.base_lrs[0], betas=betas)
        self.base_lr = trainer.base_lrs[0]
        self.batch, self.steps, self.clip = spec.batch_size, spec.steps, spec.grad_clip
        self.rate = spec.ema_rates[0]
        self.generator = torch.Generator().manual_seed(0)
        self.step = 0

    def draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n, g = self.batch, self.generator
        a = 4 * torch.rand(n, generator=g) - 2
        b = torch.rand(n, generator=g) - 2 * torch.randint(0, 2, (n,), generator=g) + torch.floor(a) % 2
        x1 = 2 * torch.stack([a, b], dim=1)
        x0 = torch.randn(n, 2, generator=g)
        k, m = n // 2, n // 4
        diag = torch.rand(k, generator=g)
        triangle = 1 - torch.sqrt(1 - torch.rand(m, generator=g))  # gap density 2 (1 - d)
        widest = min(1.0, 0.1 + 0.9 * self.step / 1500)
        flat = widest * torch.rand(n - k - m, generator=g)  # gap uniform on [0, widest]
        gap = torch.cat([triangle, flat])
        s_off = torch.rand(n - k, generator=g) * (1 - gap)
        s, t = torch.cat([diag, s_off]), torch.cat([diag, s_off + gap])
        return x0, x1, 2 * s / (1 + s), 2 * t / (1 + t)

    def X(self, net, x, s, t):
        return x + (t - s)[:, None] * net(x, s, t)[:, 0]

    def loss(self, x0, x1, s, t) -> torch.Tensor:
        k = self.batch // 2
        td = t[:k]
        xt = (1 - td)[:, None] * x0[:k] + td[:, None] * x1[:k]
        fm = (self.net(xt, td, td)[:, 0] - (x1[:k] - x0[:k])).pow(2).mean(1)
        s_, t_ = s[k:], t[k:]
        xs = (1 - s_)[:, None] * x0[k:] + s_[:, None] * x1[k:]
        Xst, dX = torch.func.jvp(lambda tau: self.X(self.net, xs, s_, tau), (t_,), (torch.ones_like(t_),))
        with torch.no_grad():
            target = self.net(Xst, t_, t_)[:, 0]
        lsd = (dX - target).pow(2).mean(1)
        return torch.cat([fm, lsd]).mean()

    def optimise(self, inputs) -> float:
        loss = self.loss(*inputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        value = float(loss.detach())
        if math.isfinite(value) and math.isfinite(float(norm)):
            lr = self.base_lr * 0.5 * (1 + math.cos(math.pi * min(self.step / self.steps, 1.0)))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            rate = min(self.rate, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.net.parameters()), 1 - rate)
        self.step += 1
        return value


def _count(value: int | None, baseline: int | None) -> list[str]:
    """The count and ratio cells ('-' where not measured)."""
    if value is None or baseline is None:
        return ["-", "-"]
    return [f"{value:,}", f"{value / baseline:.2f}"]


def default_derivative(trainer: Trainer) -> str:
    """The registered names of the derivative strategies in `trainer`'s objective ('-' for none)."""
    names = {
        type(part).registry_name
        for part in registry.parts(trainer.spec.objective)
        if getattr(type(part), "registry_family", None) == "derivative"
    }
    return ", ".join(sorted(names)) or "-"


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo), to name with a timing."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def time_variants(config_file: str, variants: list[str], steps: int, rounds: int) -> None:
    """Table 3: the step of `config_file` with each variant's bindings against it as is."""
    trainers = {"as is": build(config_file, [])}
    for variant in variants:
        trainers[variant] = build(config_file, [b.strip() for b in variant.split(";") if b.strip()])
    times = median_step_times({name: step_of(t) for name, t in trainers.items()}, steps, rounds)
    print(f"Step cost of variants of {config_file} ({torch.get_num_threads()} threads)\n")
    rows = [[name, f"{1e3 * seconds:.1f}", f"{seconds / times['as is']:.2f}"] for name, seconds in times.items()]
    print(report.table(["variant", "ms / step", "ratio"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--config", default="experiments/checkerboard_lsd.gin", help="config for the framework tax")
    parser.add_argument(
        "--variant", action="append", default=[], help="gin bindings to time against --config, ';'-separated"
    )
    parser.add_argument("--dataset", default="checkerboard", help="dataset of the methods table (gin/datasets/)")
    parser.add_argument("--methods", nargs="+", default=METHODS, help="methods of the table (fm first)")
    parser.add_argument("--gin", action="append", default=[], help="a binding for every method (repeatable)")
    parser.add_argument(
        "--compile", nargs="+", default=["none"], choices=["none", "backbone", "step"], help="train.compile modes"
    )
    parser.add_argument("--profile", action="store_true", help="also say where each row's step time goes")
    parser.add_argument(
        "--derivative",
        nargs="+",
        default=[],
        help="derivative strategies to bind to every objective (default: config's)",
    )
    args = parser.parse_args()
    torch._inductor.config.cpp.enable_kernel_profile = True  # fused kernels appear in the profiler
    torch.manual_seed(0)
    if args.variant:
        time_variants(args.config, args.variant, args.steps, args.rounds)
        return

    strategies = args.derivative or [None]
    rows = {}  # name -> (method, strategy, bindings)
    for method in args.methods:
        for strategy in strategies if method != "fm" else [None]:
            for mode in args.compile:
                extra = [f"train.compile = '{mode}'"] + (config.derivative_bindings(strategy) if strategy else [])
                rows[" ".join(filter(None, [method, strategy, mode]))] = (method, strategy, extra)
    trainers = {
        name: build(method_config(args.dataset, method), [*args.gin, *extra])
        for name, (method, strategy, extra) in rows.items()
    }
    per_method = median_step_times({name: step_of(t) for name, t in trainers.items()}, args.steps, args.rounds)
    ops = {name: ops_of_step(t) for name, t in trainers.items()}
    kernels = {name: kernels_of_step(t) for name, t in trainers.items()}
    flops = {}
    for method, strategy, _ in rows.values():
        if (method, strategy) not in flops:
            eager = [*args.gin, *(config.derivative_bindings(strategy) if strategy else []), "train.compile = 'none'"]
            flops[method, strategy] = flops_of_step(build(method_config(args.dataset, method), eager))
    fm_rows = [name for name, row in rows.items() if row[0] == args.methods[0]]
    fm_name = min(fm_rows, key=per_method.get)
    fm = trainers[fm_name]
    fm_flops = flops[rows[fm_name][0], None]
    spec = fm.spec
    print(
        f"Step cost against flow matching ({args.dataset}, batch {spec.batch_size}, {type(fm.net).__name__}, "
        f"{sum(p.numel() for p in fm.net.parameters()):,} parameters, {spec.precision}, {fm.device}, "
        f"{torch.get_num_threads()} threads; {cpu_name()})\n"
    )
    head = ["method", "derivative", "compile", "ms / step", f"time ratio to {fm_name}", "FLOP ratio"]
    head += ["time / FLOP ratio", "aten ops / step", "ops ratio", "kernels / step", "kernels ratio"]
    fm_eager = next((name for name in fm_rows if ops[name] is not None), None)
    lines = []
    for name, seconds in per_method.items():
        method, strategy, _ = rows[name]
        trainer = trainers[name]
        time_ratio = seconds / per_method[fm_name]
        flop_ratio = flops[method, strategy] / fm_flops
        lines.append(
            [method, strategy or default_derivative(trainer), trainer.compile, f"{1e3 * seconds:.1f}"]
            + [f"{time_ratio:.2f}", f"{flop_ratio:.2f}", f"{time_ratio / flop_ratio:.2f}"]
            + [*_count(ops[name], ops.get(fm_eager)), *_count(kernels[name], kernels[fm_name])]
        )
    print(report.table(head, lines))
    if args.profile:
        print("\nSelf CPU ms per step by kind of op (torch.profiler, 5 steps)\n")
        lines = []
        for name, trainer in trainers.items():
            total, groups = time_by_group(trainer)
            method, strategy, _ = rows[name]
            cells = [f"{total:.1f}", *(f"{ms:.1f}" for ms in groups.values())]
            lines.append([method, strategy or default_derivative(trainer), trainer.compile, *cells])
        print(report.table(["method", "derivative", "compile", "all", *(n for n, _ in PROFILE_GROUPS)], lines))
    if args.dataset != "checkerboard":
        return

    # Like with like: the minimal loop is eager, with forward-mode AD.
    framework = build(args.config, ["train.compile = 'none'", *config.derivative_bindings("forward_ad")])
    with torch.no_grad():  # off the zero-initialised output layer, so the probe's loss depends on every term
        for p in framework.net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    minimal = MinimalLoop(framework)
    x0, x1, s, t = minimal.draw()
    probe = StepInput(batch=Batch(x1=x1), x0=x0, times=TimeSample(s=s, t=t, n_diagonal=len(s) // 2))
    ours = float(framework.loss(probe)[0].detach())
    theirs = float(minimal.loss(x0, x1, s, t).detach())
    print(f"\nSame math: framework loss {ours:.6f}, minimal loop {theirs:.6f} on identical inputs")
    contenders = {
        "framework": step_of(framework),
        "minimal": lambda: minimal.optimise(minimal.draw()),
    }
    tax = median_step_times(contenders, args.steps, args.rounds)
    print("\n" + report.table(["loop", "ms / step"], [[name, f"{1e3 * seconds:.2f}"] for name, seconds in tax.items()]))
    print(f"\nFramework tax ({args.config}): {tax['framework'] / tax['minimal']:.3f}x")


if __name__ == "__main__":
    main()
