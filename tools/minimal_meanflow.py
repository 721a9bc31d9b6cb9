"""MeanFlow on the checkerboard in a hand-written loop, outside the library's trainer.

    python tools/minimal_meanflow.py [--steps 15000] [--seed 0] [--out DIR]

A control for gin/experiments/checkerboard_meanflow.gin: if this loop, which shares no
training code with flowmap (its own network, time draws, loss, JVP, optimiser loop, EMA
and sampler), scores like the library's run at the same budget, the library's MeanFlow
score is the method's and not the library's. Only the data sampler and the histogram KL
that scores the samples are flowmap's, so the two are scored identically.

Everything is in MeanFlow's own convention (Geng et al. 2025): data at time 0, noise at
time 1, z_t = (1 - t) x + t e, the average velocity u(z, r, t) over [r, t], r <= t, and
the target u_tgt = v - (t - r) (v . d_z u + d_t u) with v = e - x, from one forward-mode
JVP of u along (v, 0, 1). The recipe is the experiment's: plain squared loss (p = 0),
(r, t) uniform on the triangle r < t with half the rows on the diagonal r = t, an MLP of
4 x 256 GELU on Fourier features of (z, r, t), Adam lr 2e-3 with a cosine decay to 0,
gradient norm clipped at 10, batch 1024, EMA 0.999; k-step sampling jumps from t = 1 to
0 on a uniform grid, z_r = z_t - (t - r) u(z_t, r, t). Writes DIR/scores.json and prints
the KL table of the EMA weights (200,000 samples per step count).
"""

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import jvp

STEP_COUNTS = (1, 2, 4, 8, 16)


def fourier(v: torch.Tensor, octaves: int, base: float) -> torch.Tensor:
    """[v, sin(base 2^k v), cos(base 2^k v)] for k < octaves, per coordinate."""
    angles = v.unsqueeze(-1) * (base * 2.0 ** torch.arange(octaves, dtype=v.dtype))
    return torch.cat([v.unsqueeze(-1), angles.sin(), angles.cos()], dim=-1).flatten(-2)


class AverageVelocity(nn.Module):
    """u(z, r, t): 4 x 256 GELU on Fourier features of z (4 octaves over [-4, 4]) and of r, t
    (2 octaves over [0, 1]); the last layer starts at zero."""

    def __init__(self, width: int = 256, depth: int = 4):
        super().__init__()
        layers, fan_in = [], 2 * 9 + 2 * 5
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.GELU()]
            fan_in = width
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        features = [fourier(z, 4, math.pi / 4), fourier(r[:, None], 2, math.pi), fourier(t[:, None], 2, math.pi)]
        return self.out(self.hidden(torch.cat(features, dim=-1)))


def draw_times(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t), r <= t: half the rows r = t ~ U(0, 1), the rest uniform on the triangle r < t."""
    a, b = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    r, t = torch.minimum(a, b), torch.maximum(a, b)
    diagonal = torch.arange(n) < n // 2
    return torch.where(diagonal, t, r), t


def loss_fn(u: nn.Module, x: torch.Tensor, e: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |u(z_t, r, t) - sg(u_tgt)|^2 (summed over coordinates)."""
    z = (1 - t[:, None]) * x + t[:, None] * e
    v = e - x
    value, du_dt = jvp(u, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    target = (v - (t - r)[:, None] * du_dt).detach()
    return ((value - target) ** 2).sum(-1).mean()


@torch.no_grad()
def sample(u: nn.Module, e: torch.Tensor, steps: int, batch: int = 50_000) -> torch.Tensor:
    """k jumps from noise (t = 1) to data (t = 0) on a uniform grid."""
    out = []
    for z in e.split(batch):
        grid = torch.linspace(1, 0, steps + 1)
        for t, r in zip(grid[:-1], grid[1:], strict=True):
            ones = torch.ones(len(z))
            z = z - (t - r) * u(z, r * ones, t * ones)
        out.append(z)
    return torch.cat(out)


def train(steps: int, seed: int, batch: int = 1024, lr: float = 2e-3) -> tuple[nn.Module, float]:
    import flowmap_components  # noqa: F401  (registers the checkerboard and the metric)
    from flowmap_core import registry

    data = registry.build("dataset", "checkerboard")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    u = AverageVelocity()
    ema = copy.deepcopy(u).requires_grad_(False)
    optimiser = torch.optim.Adam(u.parameters(), lr=lr)
    start = time.perf_counter()
    for step in range(steps):
        x = data.sample(batch, generator=generator, device=torch.device("cpu"), dtype=torch.float32).x1
        e = torch.randn(batch, 2, generator=generator)
        r, t = draw_times(batch, generator)
        for group in optimiser.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = loss_fn(u, x, e, r, t)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(u.parameters(), 10.0)
        optimiser.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), u.parameters(), strict=True):
                p_ema.lerp_(p, 1 - 0.999)
        if (step + 1) % 500 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return ema, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None, help="write scores.json here")
    args = parser.parse_args(argv)
    import flowmap_components  # noqa: F401  (registers the checkerboard and the metric)
    from flowmap_core import registry, report
    from flowmap_core.rundir import RunDir

    ema, seconds = train(args.steps, args.seed)
    data, metric = registry.build("dataset", "checkerboard"), registry.build("metric", "histogram_kl")
    e = torch.randn(args.samples, 2, generator=torch.Generator().manual_seed(1234))
    scores = {f"kl_{k}": metric(sample(ema, e, k), data) for k in STEP_COUNTS}
    head = ["weights", *[report.column_name(k, "steps") for k in STEP_COUNTS]]
    print(report.table(head, [["ema_0.999", *[report.score(scores[f"kl_{k}"]) for k in STEP_COUNTS]]]))
    print(f"{args.steps} steps in {seconds:.0f} s, seed {args.seed}")
    if args.out is not None:
        run = RunDir(args.out)
        run.create()
        run.add_tool_scores(scores | {"training_seconds": seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
