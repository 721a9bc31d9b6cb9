"""Lipschitz estimates of a trained run: the spectral norm of the Jacobian of the learned velocity
b_t = v_{t,t} and of the map X_{s,t}, at points drawn from the interpolant, per time.

    python tools/lipschitz.py RUN_DIR [--times 0 0.25 0.5 0.75 1] [--pairs 0:1 0:0.5 0.5:1]
                                      [--n 512] [--iterations 30] [--weights ema_0.999]

At each point x, ||grad_x f(x)||_2 comes from power iteration on J^T J with one forward-mode
(J v, `torch.func.jvp`) and one reverse-mode (J^T u, `torch.func.vjp`) product a round:
v <- J^T J v / |J^T J v|, sigma = |J v|. The table gives, per time t (velocity, at x_t) and per
pair (s, t) (map, at x_s), the mean, the 50/90/99% quantiles and the max over the points: a
lower bound on the Lipschitz constant over the data's path. If the run's dataset is
`dataset.gaussian_mixture_nd`, the exact velocity's and map's rows are added for comparison
(from the full Jacobian, d forward-mode products: the solved map has no reverse mode).
Writes RUN_DIR/lipschitz.json (or --out).
"""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import torch
from torch import Tensor

QUANTILES = (0.5, 0.9, 0.99)


def spectral_norms(fn: Callable[[Tensor], Tensor], x: Tensor, *, iterations: int = 30, seed: int = 0) -> Tensor:
    """||grad_x fn(x_i)||_2 for every row x_i of x `(batch, *shape)`, by `iterations` rounds of
    power iteration on J_i^T J_i from a random unit start (fixed by `seed`). `fn` must act on
    each row alone (no mixing across the batch), as flow maps and velocities do."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def unit(w: Tensor) -> Tensor:
        return w / w.flatten(1).norm(dim=1).clamp(min=1e-30).reshape(-1, *([1] * (w.dim() - 1)))

    v = unit(v)
    _, pullback = torch.func.vjp(fn, x)
    for _ in range(iterations):
        _, jv = torch.func.jvp(fn, (x,), (v,))
        (jtjv,) = pullback(jv)
        v = unit(jtjv)
    _, jv = torch.func.jvp(fn, (x,), (v,))
    return jv.flatten(1).norm(dim=1).detach()


def jacobian_spectral_norms(fn: Callable[[Tensor], Tensor], x: Tensor, **_: object) -> Tensor:
    """||grad_x fn(x_i)||_2 from the full Jacobian, one forward-mode product per input dimension
    (for maps without reverse mode, such as `exact.gaussian_mixture`'s solved map; d products)."""
    flat = x.flatten(1)
    columns = []
    for j in range(flat.shape[1]):
        basis = torch.zeros_like(flat)
        basis[:, j] = 1
        columns.append(torch.func.jvp(fn, (x,), (basis.reshape(x.shape),))[1].flatten(1))
    return torch.linalg.matrix_norm(torch.stack(columns, dim=2), ord=2).detach()


def summarise(norms: Tensor) -> dict[str, float]:
    """Mean, quantiles and max of per-point spectral norms."""
    values = norms.double().cpu()
    out = {"mean": values.mean().item()}
    out |= {f"q{round(q * 100)}": torch.quantile(values, q).item() for q in QUANTILES}
    return out | {"max": values.max().item()}


def path_points(interpolant, x0: Tensor, x1: Tensor, t: float) -> Tensor:
    """x_t = alpha(t) x0 + beta(t) x1."""
    times = torch.full((x0.shape[0],), t, dtype=x0.dtype, device=x0.device)
    return interpolant.interpolate(x0, x1, times).xt


def estimate(
    X,
    interpolant,
    x0: Tensor,
    x1: Tensor,
    *,
    times: Sequence[float],
    pairs: Sequence[tuple[float, float]],
    iterations: int,
    norms: Callable[..., Tensor] = spectral_norms,
) -> dict[str, dict[str, dict[str, float]]]:
    """{'velocity': {t: stats}, 'map': {'s->t': stats}} for a map `X(x, s, t)` with `X.velocity(x, t)`,
    the per-point norms by `norms` (power iteration by default)."""
    out: dict[str, dict[str, dict[str, float]]] = {"velocity": {}, "map": {}}
    n = x0.shape[0]
    for t in times:
        xt = path_points(interpolant, x0, x1, t)
        tt = torch.full((n,), t, dtype=x0.dtype, device=x0.device)
        velocity = norms(lambda y, tt=tt: X.velocity(y, tt), xt, iterations=iterations)
        out["velocity"][f"{t:g}"] = summarise(velocity)
    for s, t in pairs:
        xs = path_points(interpolant, x0, x1, s)
        ss, tt = (torch.full((n,), v, dtype=x0.dtype, device=x0.device) for v in (s, t))
        out["map"][f"{s:g}->{t:g}"] = summarise(norms(lambda y, ss=ss, tt=tt: X(y, ss, tt), xs, iterations=iterations))
    return out


def table(results: dict[str, dict]) -> str:
    """One row per (weights, kind, time), columns mean, quantiles, max."""
    from flowmap_core import report

    names = ["mean", *[f"q{round(q * 100)}" for q in QUANTILES], "max"]
    rows = [
        [who, kind, at, *[f"{stats[k]:.3f}" for k in names]]
        for who, kinds in results.items()
        for kind, rows in kinds.items()
        for at, stats in rows.items()
    ]
    return report.table(["weights", "of", "at", *names], rows)


def pair(text: str) -> tuple[float, float]:
    s, t = (float(v) for v in text.split(":"))
    if not 0 <= s <= 1 or not 0 <= t <= 1:
        raise argparse.ArgumentTypeError(f"times must be in [0, 1], got {text}")
    return s, t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--times", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
    parser.add_argument("--pairs", type=pair, nargs="*", default=[(0.0, 1.0), (0.0, 0.5), (0.5, 1.0)])
    parser.add_argument("--n", type=int, default=512, help="points per time")
    parser.add_argument("--iterations", type=int, default=30, help="power-iteration rounds")
    parser.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default: RUN_DIR/lipschitz.json)")
    args = parser.parse_args(argv)

    from flowmap_core.run_sampler import RunSampler

    sampler = RunSampler.open(args.run_dir, args.weights)
    trainer, weights, X = sampler.trainer, sampler.weights, sampler.X
    spec = trainer.spec
    generator = torch.Generator().manual_seed(args.seed)
    x1 = spec.dataset.sample(args.n, generator=generator, device=trainer.device, dtype=trainer.dtype).x1
    x0 = torch.randn(x1.shape, generator=generator, dtype=torch.float32).to(device=x1.device, dtype=x1.dtype)
    common = {"times": args.times, "pairs": args.pairs, "iterations": args.iterations}
    results = {weights: estimate(X, spec.interpolant, x0, x1, **common)}
    mixture = getattr(spec.dataset, "mixture", None)
    if mixture is not None:
        exact = attrs.evolve(mixture, interpolant=spec.interpolant)
        points = (x0.double().cpu(), x1.double().cpu())
        results["exact"] = estimate(ExactMap(exact), spec.interpolant, *points, **common, norms=jacobian_spectral_norms)
    print(table(results))
    out = args.out or args.run_dir / "lipschitz.json"
    out.write_text(json.dumps({"step": trainer.step, "n": args.n, "results": results}, indent=1))
    print(f"lipschitz: written to {out}", file=sys.stderr)
    return 0


@attrs.frozen
class ExactMap:
    """An `ExactFlow` seen as a map `X(x, s, t)` with `X.velocity(x, t)`."""

    exact: object

    def __call__(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return self.exact.flow_map(x, s, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.exact.velocity(x, t)


if __name__ == "__main__":
    sys.exit(main())
