"""Sample a trained run as its evaluation does: the one way the CLI and the tools draw samples.

    sampler = RunSampler.open(run_dir)            # its config, newest checkpoint, first EMA
    x0 = sampler.noise()                          # the noise `flowmap eval` starts from
    x = sampler.sample(x0, steps=4).x             # what report.md's 4-step row scores
    sampler.score(x)                              # ... and its score

`noise` draws as `evaluation.draws` does (the same seed and order, so a tool's "k steps" is
the report's), and `sample` runs in chunks of `evaluate.chunk`: k steps of the evaluation's
sampler, flow-map jumps along any time grid, or an ODE solve of the diagonal velocity.
"""

from collections.abc import Sequence
from pathlib import Path

import attrs
import torch
from torch import Tensor

from flowmap_core import config, runs
from flowmap_core.evaluation import EvalSpec, noise, real_samples, sample_all
from flowmap_core.flow_map import FlowMap
from flowmap_core.rundir import RunDir
from flowmap_core.sampling import Samples, flow_map_sample, ode_sample
from flowmap_core.trainer import Trainer


@attrs.frozen
class RunSampler:
    """The flow map `X` of a run's `weights`, with the run's trainer and evaluation spec."""

    trainer: Trainer
    spec: EvalSpec
    weights: str
    X: FlowMap

    @classmethod
    def open(
        cls,
        run_dir: Path | str | RunDir,
        weights: str | None = None,
        bindings: Sequence[str] = (),
        imports: Sequence[str] = config.DEFAULT_IMPORTS,
    ) -> "RunSampler":
        """The newest checkpoint of `run_dir` (its config plus `bindings`); `weights` is an EMA
        (`ema_0.999`) or `online`, by default the run's headline weights (its first EMA)."""
        trainer = runs.open_run(run_dir, bindings, imports)
        name = weights or runs.headline_weights(trainer)
        return cls(trainer=trainer, spec=runs.build_eval_spec(), weights=name, X=runs.flow_maps(trainer, [name])[name])

    @property
    def dataset(self):
        return self.trainer.spec.dataset

    def noise(self, n: int | None = None, seed: int | None = None) -> Tensor:
        """The noise the evaluation of `n` samples with seed `seed` starts from (by default the
        run's own `evaluate.num_samples` and `evaluate.seed`), on the run's device."""
        spec = attrs.evolve(
            self.spec,
            num_samples=self.spec.num_samples if n is None else n,
            seed=self.spec.seed if seed is None else seed,
        )
        return noise(spec, self.dataset, device=self.trainer.device, dtype=self.trainer.dtype)

    def data(self, n: int, seed: int | None = None) -> Tensor:
        """`n` true data points, on the run's device: fresh draws seeded by `seed` (default: the
        run's `evaluate.seed`), or the first `n` of the held-out split of streamed data."""
        spec = attrs.evolve(self.spec, num_samples=n, seed=self.spec.seed if seed is None else seed)
        x1 = real_samples(spec, self.dataset, torch.Generator().manual_seed(spec.seed))
        return x1.to(device=self.trainer.device, dtype=self.trainer.dtype)

    def given(self, label: int | None = None, guidance: float = 1.0) -> FlowMap:
        """The map conditioned on class `label` at guidance scale `guidance` (no label: the null class)."""
        if label is None and guidance == 1.0:
            return self.X
        cond = self.trainer.spec.conditioning.given(-1 if label is None else label, guidance)
        return self.X.with_cond(**{k: v.to(self.trainer.device) for k, v in cond.items()})

    def sample(
        self,
        x0: Tensor,
        steps: int | None = None,
        *,
        grid: Tensor | None = None,
        ode: str | None = None,
        X: FlowMap | None = None,
    ) -> Samples:
        """Samples from `x0` (on the CPU): `steps` steps of the evaluation's sampler, exactly as
        the evaluation takes them; or flow-map jumps along `grid`; or, with `ode`, an ODE solve of
        the velocity b_t = v_{t,t} (euler, heun, rk4: `steps` steps or `grid`; dopri5: adaptive).
        `X` replaces the run's map (e.g. `given(label, w)`). NFE is per sample; for dopri5 it is
        the most any chunk took."""
        X = self.X if X is None else X
        if ode is None and grid is None and steps is not None:
            x = sample_all(self.spec, X, x0, steps, self.trainer.spec.interpolant, self.trainer.device)
            return Samples(x=x, nfe=steps * getattr(self.spec.sampler, "nfe_per_step", 1))
        if ode != "dopri5" and (steps is None) == (grid is None):
            raise ValueError("give exactly one of `steps` and `grid` (none with ode='dopri5')")
        outs = [_sample_chunk(X, chunk, steps, grid, ode) for chunk in x0.split(self.spec.chunk)]
        return Samples(x=torch.cat([out.x.cpu() for out in outs]), nfe=max(out.nfe for out in outs))

    def sample_chunks(self, x0: Tensor, *, ode: str, rtol: float, atol: float) -> list[Samples]:
        """An adaptive ODE solve (`ode` = dopri5) of each chunk of `x0`, each with its own NFE."""
        return [
            ode_sample(self.X.velocity, chunk, solver=ode, rtol=rtol, atol=atol) for chunk in x0.split(self.spec.chunk)
        ]

    def images(self, x: Tensor) -> Tensor:
        """Samples `x` as images: decoded through the VAE of a latent dataset, else as they are."""
        return self.spec.images(x, self.dataset)

    def score(self, x: Tensor) -> float:
        """The run's metric of samples `x` against its data."""
        return self.spec.score(x, self.dataset)


def _sample_chunk(X: FlowMap, x0: Tensor, steps: int | None, grid: Tensor | None, ode: str | None) -> Samples:
    """Flow-map jumps along `grid`, or an ODE solve of X's velocity."""
    if ode is None:
        return flow_map_sample(X, x0, grid=grid.to(x0))
    if ode == "dopri5":
        return ode_sample(X.velocity, x0, solver=ode)
    return ode_sample(X.velocity, x0, solver=ode, steps=steps, grid=grid)
