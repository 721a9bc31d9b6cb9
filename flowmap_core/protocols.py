"""The contract of each component family: a `typing.Protocol` plus frozen output records.

One file on purpose (over 500 lines): the families refer to each other (an objective takes
a flow map, a teacher, an interpolant, a derivative), and a user writing a component reads
its contract here beside the ones it calls.

Conventions (fixed for the whole library): time runs in [0, 1], t = 0 is the Gaussian
base `x0`, t = 1 is data `x1`; tensors are batch-first, `x` is `(batch, *shape)` and times
are `(batch,)`. A flow map `X_{s,t}(x)` carries a point from time s to time t along the
probability-flow ODE `dx/dt = b_t(x)`; it is always written in Euler form

    X_{s,t}(x) = x + (t - s) V_{s,t}(x),            b_t(x) = V_{t,t}(x),

where `V` is the *mean velocity* a parameterisation reads off the backbone. The form is a
reparameterisation, not an approximation.

Each family is declared here with the attributes its members must have; a component
joins a family with `flowmap_core.registry.register(family, name)`. Every family's contract
is in this one file (over 450 lines) so that the whole design space reads in one place.
"""

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np
import torch
from torch import Tensor

from flowmap_core import records
from flowmap_core.registry import declare_family

# --------------------------------------------------------------------------- records


@records.traceable
@attrs.frozen
class Coefficients:
    """Interpolant schedule at times t: `x_t = alpha x0 + beta x1` and its time derivatives."""

    alpha: Tensor
    beta: Tensor
    alpha_dot: Tensor
    beta_dot: Tensor


@records.traceable
@attrs.frozen
class InterpolantPoint:
    """A point of the interpolant, `xt = alpha(t) x0 + beta(t) x1`, and `dxt = d/dt xt`."""

    xt: Tensor
    dxt: Tensor


@records.traceable
@attrs.frozen
class Batch:
    """A batch of data `x1` (batch-first), with optional integer class labels."""

    x1: Tensor
    label: Tensor | None = None

    def __len__(self) -> int:
        return self.x1.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Batch":
        label = None if self.label is None else self.label.to(device)
        return Batch(x1=self.x1.to(device=device, dtype=dtype), label=label)


@records.traceable
@attrs.frozen
class TimeSample:
    """Time pairs for one batch: `s[i]`, `t[i]`; the first `n_diagonal` rows have s = t.

    Diagonal rows train the velocity `b_t = V_{t,t}` (flow matching); the others train
    the map off the diagonal (self-distillation). Generation uses s < t. A sampler may
    also give an intermediate time `u[i]` between s and t (a discretisation's next point).
    """

    s: Tensor
    t: Tensor
    n_diagonal: int
    u: Tensor | None = None

    def __len__(self) -> int:
        return self.s.shape[0]


@records.traceable
@attrs.frozen
class ObjectiveOutput:
    """Per-example loss `(batch,)` and named scalar terms for logging."""

    per_example: Tensor
    terms: Mapping[str, Tensor] = attrs.field(factory=dict)


# ------------------------------------------------------------------------- protocols


@runtime_checkable
class Interpolant(Protocol):
    """`x_t = alpha(t) x0 + beta(t) x1`, alpha(0)=1, beta(0)=0, alpha(1)=0, beta(1)=1."""

    def coefficients(self, t: Tensor) -> Coefficients:
        """alpha, beta and their time derivatives at times `t` (each shaped like `t`)."""

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor) -> InterpolantPoint:
        """`xt` and `dxt/dt` for each example (the flow-matching target on the diagonal)."""


class Backbone(Protocol):
    """An `nn.Module` built as `Backbone(data_shape=..., heads=...)`.

    `forward(x, s, t, **cond)` maps `(batch, *shape)`, `(batch,)`, `(batch,)` to
    `(batch, heads, *shape)`: the raw outputs a parameterisation reads.
    """

    def forward(self, x: Tensor, s: Tensor, t: Tensor, **cond: Tensor) -> Tensor: ...


@runtime_checkable
class Parameterisation(Protocol):
    """How a backbone's outputs define the flow map, through the mean velocity `V_{s,t}`.

    `heads` is the number of data-shaped outputs the backbone must produce. Every
    parameterisation satisfies X_{t,t} = id and d/dt X_{s,t}|_{t=s} = V_{s,s} by construction.
    `fixed_t` is None for two-time maps; a single-time map (consistency models) defines
    only X_{s,fixed_t} and must be trained and sampled at t = fixed_t.
    """

    heads: int
    fixed_t: float | None

    def mean_velocity(
        self, net: Callable[..., Tensor], x: Tensor, s: Tensor, t: Tensor, cond: Mapping[str, Tensor]
    ) -> Tensor:
        """`V_{s,t}(x)` such that `X_{s,t}(x) = x + (t - s) V_{s,t}(x)`."""

    def represent(self, exact: "ExactFlow", x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """Backbone outputs `(batch, heads, *shape)` under which this parameterisation
        reproduces the closed-form map `exact` (puts a known map into any parameterisation)."""


@runtime_checkable
class StopGradient(Protocol):
    """Where the stop-gradient sits in a self-distillation objective.

    Objectives call the hooks, and document where: `target(fn, *args)` evaluates the
    implicit teacher's output (the target); `target_input(x)` is applied to a student
    quantity before it enters the teacher; `derivative(d)` to the student's time
    derivative term; `stops_transport` says whether the transport term of the Eulerian
    objective carries gradient, `stops_derivative` whether `derivative` detaches (then an
    objective may take one derivative of the student where it would take two).
    """

    stops_transport: bool
    stops_derivative: bool

    def target(self, fn: Callable[..., Tensor], *args: Any) -> Tensor: ...

    def target_input(self, x: Tensor) -> Tensor: ...

    def derivative(self, d: Tensor) -> Tensor: ...


@runtime_checkable
class VelocitySource(Protocol):
    """The velocity that closes a self-distillation target.

    `at(inp, x, t, point)` is the velocity at `x`, time `t`. `point` is the interpolant
    point of the batch when `x` is one (x = x_t of the sampled pair), else None: the
    conditional velocity dx_t/dt exists only there (`needs_interpolant_point`).
    """

    needs_interpolant_point: bool

    def at(self, inp: "ObjectiveInput", x: Tensor, t: Tensor, point: InterpolantPoint | None) -> Tensor: ...

    def advance(self, inp: "ObjectiveInput", x: Tensor, s: Tensor, u: Tensor) -> Tensor:
        """`x` (at time s) carried to time u: along the pair, or by one Euler step."""


@records.traceable
@attrs.frozen
class ObjectiveInput:
    """Everything an objective sees for one batch.

    `student` is the online network read through the parameterisation (gradients flow
    into it); `teacher` is the network that supplies targets: the online weights or
    their EMA. The first `n_diagonal` rows have s = t. `generator` drives any randomness
    inside the objective (e.g. PSD-U's h). `step` is the training step (for objectives
    with a schedule of their own, e.g. sCM's tangent warm-up).
    """

    x0: Tensor
    x1: Tensor
    s: Tensor
    t: Tensor
    interpolant: Interpolant
    student: "FlowMapLike"
    teacher: "FlowMapLike"
    n_diagonal: int = 0
    u: Tensor | None = None
    generator: torch.Generator | None = None
    step: int = 0
    uniforms: Tensor | None = None

    def __len__(self) -> int:
        return self.x0.shape[0]

    def uniform(self) -> Tensor:
        """One U(0, 1) draw per example `(batch,)`, in the times' dtype and device."""
        if self.uniforms is not None:
            return self.uniforms.to(self.s.dtype)
        return torch.rand(self.s.shape, generator=self.generator, device=self.s.device, dtype=self.s.dtype)

    def rows(self, index: slice) -> "ObjectiveInput":
        """The same input restricted to a range of rows."""
        start, stop, _ = index.indices(len(self))
        return records.evolve(
            self,
            x0=self.x0[index],
            x1=self.x1[index],
            s=self.s[index],
            t=self.t[index],
            u=None if self.u is None else self.u[index],
            uniforms=None if self.uniforms is None else self.uniforms[index],
            student=self.student.rows(index),
            teacher=self.teacher.rows(index),
            n_diagonal=max(0, min(stop, self.n_diagonal) - start),
        )


class FlowMapLike(Protocol):
    """A flow map an objective can evaluate: see `flowmap_core.flow_map.FlowMap`."""

    def __call__(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor: ...

    def mean_velocity(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor: ...

    def velocity(self, x: Tensor, t: Tensor) -> Tensor: ...

    def mean_velocity_tangent(
        self, x: Tensor, s: Tensor, t: Tensor, dx: Tensor | None, ds: Tensor | None, dt: Tensor | None
    ) -> tuple[Tensor, Tensor]: ...

    def rows(self, index: slice) -> "FlowMapLike": ...

    def with_cond(self, **cond: Tensor) -> "FlowMapLike": ...


@runtime_checkable
class Objective(Protocol):
    """A training loss: per-example values for a batch of (x0, x1, s, t)."""

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput: ...


@runtime_checkable
class Derivative(Protocol):
    """How an objective differentiates the student's mean velocity along a direction.

    `__call__(X, x, s, t, dx=..., ds=..., dt=...)` returns `(V_{s,t}(x), dV)` with
    `dV = d/de V_{s+e ds, t+e dt}(x + e dx)` at e = 0 (a tangent left None is zero):
    d/dt V is `dt = 1`, d/ds V is `ds = 1`, ESD's d/ds V + grad_x V . v is `(dx, ds) = (v, 1)`.
    Both outputs carry gradient to the student's parameters. `compiles` says whether a
    training step using it traces whole under `torch.compile(fullgraph=True)` in the
    installed torch; `exact` whether dV is exact (up to float rounding) or an approximation.
    """

    compiles: bool
    exact: bool

    def unavailable(self, X: "FlowMapLike") -> str | None:
        """Why this strategy cannot differentiate `X` (e.g. its backbone has no tangent pass), or None."""

    def __call__(
        self,
        X: "FlowMapLike",
        x: Tensor,
        s: Tensor,
        t: Tensor,
        *,
        dx: Tensor | None = None,
        ds: Tensor | None = None,
        dt: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class HasTangentPass(Protocol):
    """A backbone with an explicit tangent pass: `tangent(x, s, t, dx, ds, dt, **cond)` returns
    `(forward(x, s, t, **cond), its derivative along (dx, ds, dt))` computed layer by layer
    with ordinary ops (each layer's tangent rule), so the pass compiles and backpropagates
    like a forward pass. A tangent left None is zero."""

    def tangent(
        self, x: Tensor, s: Tensor, t: Tensor, dx: Tensor | None, ds: Tensor | None, dt: Tensor | None, **cond: Tensor
    ) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class Weighting(Protocol):
    """Reduces per-example losses to the scalar that is minimised, given their times.

    A weighting with parameters (e.g. a learned log-variance) is an `nn.Module`; the
    trainer optimises its parameters with the backbone's.
    """

    def __call__(self, per_example: Tensor, s: Tensor, t: Tensor) -> Tensor: ...


@runtime_checkable
class SharesBatchStatistics(Protocol):
    """A component that keeps statistics of the batch it sees (a running mean loss).

    Under data parallelism each rank sees a part of the batch. The trainer hands such a
    component `sum_over_ranks` (the identity on one process), and the component sums its
    per-batch statistics through it, so every rank keeps the statistics of the whole
    batch, as one process on the whole batch would.
    """

    def share_across_ranks(self, sum_over_ranks: Callable[[Tensor], Tensor]) -> None: ...


@runtime_checkable
class ChecksRun(Protocol):
    """An objective or teacher that works only with some of the run's other components: a
    teacher it trains stably with (implicit-teacher dynamics), an interpolant its equations
    are written in (or reads its time convention from: a pretrained model's noise levels).

    The trainer calls `check_run(interpolant=..., teacher=...)` when a run is specified;
    it raises ValueError, saying why and what works, for a combination it cannot train.
    Composite objectives (split, weighted sums) pass the question on to their parts.
    """

    def check_run(self, *, interpolant: Interpolant, teacher: "Teacher") -> None: ...


@records.traceable
@attrs.frozen
class Draw:
    """A request to a time sampler: `n` pairs for training step `step` of `total_steps`,
    drawn with `generator` (on its device), returned on `device` in `dtype`. `interpolant`
    is the run's: samplers whose distribution is given in noise levels (consistency
    models' sigma) turn levels into times through it; None where no run gives one."""

    n: int
    step: int
    total_steps: int
    generator: torch.Generator
    device: torch.device
    dtype: torch.dtype
    interpolant: Interpolant | None = None


@runtime_checkable
class TimeSampler(Protocol):
    """Draws the (s, t) pairs of a batch; may depend on the training step (annealing,
    growing discretisations)."""

    def __call__(self, draw: Draw) -> TimeSample: ...


@runtime_checkable
class Dataset(Protocol):
    """A source of data batches; `data_shape` excludes the batch dimension.

    `sample` draws with the given generator only, so a run that checkpoints the
    generator resumes the same data stream.
    """

    data_shape: tuple[int, ...]
    num_classes: int | None

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch: ...


@records.traceable
@attrs.frozen
class StreamRequest:
    """What a streaming dataset is asked for: batches of `batch_size` examples for process
    `rank` of `world_size`, on `device` in `dtype`, its randomness drawn from `seed`.

    `step` is the training step the stream starts at: 0 for a new run, the checkpoint's
    step on resume. A stream's order depends on (seed, rank, step) alone, so resuming the
    same checkpoint twice gives the same batches (see `StreamingDataset`).
    """

    batch_size: int
    seed: int
    step: int = 0
    rank: int = 0
    world_size: int = 1
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32


@runtime_checkable
class StreamingDataset(Protocol):
    """A source of data read in one pass or endlessly, not drawn from memory: sharded archives
    on a disk or an object store. `data_shape` excludes the batch dimension.

    `stream(request)` yields batches forever, each process and loader worker reading its
    own shards. A resumed run does not replay the interrupted stream sample by sample: the
    stream starts afresh from (seed, rank, step), so the resumed run sees the same data
    distribution in a different order, and two resumes of one checkpoint are identical.
    `read(limit)` is the first `limit` examples of one unshuffled pass (all when None), for
    references and evaluation.
    """

    data_shape: tuple[int, ...]
    num_classes: int | None

    def stream(self, request: StreamRequest) -> Iterator[Batch]: ...

    def read(self, limit: int | None = None) -> Batch: ...


@runtime_checkable
class DensityDataset(Dataset, Protocol):
    """A 2D dataset whose exact probability of any axis-aligned bin is known."""

    def bin_probabilities(self, edges_x: Tensor, edges_y: Tensor) -> Tensor:
        """Exact probability of each bin, `(len(edges_x) - 1, len(edges_y) - 1)`, float64."""


@runtime_checkable
class LabelledDensityDataset(DensityDataset, Protocol):
    """A 2D density dataset whose classes are known one by one (for class-conditional scores)."""

    def class_bin_probabilities(self, label: int, edges_x: Tensor, edges_y: Tensor) -> Tensor:
        """Exact probability of each bin under class `label` alone."""

    def class_sample(
        self, label: int, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype
    ) -> Batch:
        """`n` samples of class `label`."""


@runtime_checkable
class Metric(Protocol):
    """Scores samples against a dataset; lower is better."""

    name: str

    def __call__(self, samples: Tensor, dataset: Dataset) -> float: ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """A fixed network that maps images `(batch, channels, height, width)` with values in
    [-1, 1] to feature vectors `(batch, dim)`, for Fréchet distances between image sets."""

    name: str
    dim: int

    def __call__(self, images: Tensor) -> Tensor: ...


@runtime_checkable
class Teacher(Protocol):
    """Which network supplies the self-distillation targets (the implicit teacher).

    Given the student's flow map and the run's EMA networks by rate, returns the
    teacher's flow map: the online network itself, one of its EMAs, or a frozen
    network from another run (distillation).
    """

    def flow_map(self, student: "FlowMapLike", ema: Mapping[float, torch.nn.Module]) -> "FlowMapLike": ...


@runtime_checkable
class Coupling(Protocol):
    """How a batch's noise x0 is paired with its data x1 (and labels).

    `coupling(x0, x1, label)` returns the noise re-ordered so that row i pairs with x1[i]: a
    permutation of the rows of x0, so every row is still N(0, I) and only the pairing changes.
    """

    def __call__(self, x0: Tensor, x1: Tensor, label: Tensor | None) -> Tensor: ...


class LogSession(Protocol):
    """An open log of one run (`Logger.open`): scalars by step, text, images `(H, W, C)` uint8."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...

    def text(self, step: int, name: str, text: str) -> None: ...

    def image(self, step: int, name: str, pixels: np.ndarray) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Logger(Protocol):
    """Where a run's numbers go besides metrics.jsonl (always written): an experiment tracker.

    `open(path, resume_step)` starts or continues the log of the run directory `path`; a run
    resumed at `resume_step` drops what was logged after it (None: keep everything). It
    returns a `LogSession`.
    """

    def open(self, path: Path, resume_step: int | None) -> LogSession: ...


@runtime_checkable
class WarmStart(Protocol):
    """Where the student's weights start: from a model the user already has.

    `apply(net)` loads them into the freshly built backbone `net` before the EMA copies
    it; it raises ValueError, saying why, when they do not fit.
    """

    def apply(self, net: torch.nn.Module) -> None: ...


@runtime_checkable
class Conditioning(Protocol):
    """What the network is conditioned on, besides (x, s, t): nothing, a class, a guidance scale.

    During training, `__call__` turns a batch into the network's keyword inputs (with
    label dropout, guidance scales drawn per example, ...). `backbone_options` are the
    arguments the backbone needs to accept them; `unconditional()` and `given(label, w)`
    are the inputs for sampling. The label -1 means "no class" (the null token).
    `n_diagonal` is the number of leading rows the time sampler put on the diagonal (the
    flow-matching rows), for conditionings that treat them apart; None when unknown.
    """

    def __call__(
        self, batch: Batch, *, generator: torch.Generator, n_diagonal: int | None = None
    ) -> dict[str, Tensor]: ...

    def backbone_options(self, dataset: "Dataset") -> dict[str, Any]: ...

    def unconditional(self) -> dict[str, Tensor]: ...

    def given(self, label: int, guidance: float = 1.0) -> dict[str, Tensor]: ...


@runtime_checkable
class Sampler(Protocol):
    """Turns noise x0 into samples with a trained map in `steps` network-evaluation rounds."""

    def __call__(
        self, X: "FlowMapLike", x0: Tensor, steps: int, *, interpolant: Interpolant, generator: torch.Generator
    ) -> Any:
        """A `flowmap_core.sampling.Samples` record: the points and the NFE they cost."""


@runtime_checkable
class LRSchedule(Protocol):
    """Learning-rate multiplier at a step of a run of `total_steps` (1 = the optimiser's lr)."""

    def __call__(self, step: int, total_steps: int) -> float: ...


@runtime_checkable
class ExactFlow(Protocol):
    """A closed-form case: data distribution, interpolant, and its exact velocity and map."""

    data_shape: tuple[int, ...]

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """The exact probability-flow velocity `b_t(x) = E[dx_t/dt | x_t = x]`."""

    def flow_map(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """The exact flow map `X_{s,t}(x)`."""

    def mean_velocity(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """`(X_{s,t}(x) - x) / (t - s)`, and `b_s(x)` where s = t."""

    def sample_data(self, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """`n` samples of the data distribution."""


# -------------------------------------------------------------------------- families

declare_family(
    "interpolant", "schedules alpha(t), beta(t) of x_t = alpha x0 + beta x1", ("coefficients", "interpolate")
)
declare_family(
    "parameterisation",
    "how backbone outputs define X_{s,t}(x) = x + (t-s) V_{s,t}(x)",
    ("heads", "fixed_t", "mean_velocity", "represent"),
)
declare_family("objective", "training losses: flow matching and the self-distillation residuals", ("__call__",))
declare_family(
    "velocity", "the velocity closing a self-distillation target", ("needs_interpolant_point", "at", "advance")
)
declare_family(
    "stopgrad",
    "where the stop-gradient sits in a self-distillation objective",
    ("stops_transport", "stops_derivative", "target", "target_input", "derivative"),
)
declare_family(
    "derivative",
    "how objectives take d/dt, d/ds and directional derivatives of the student's V_{s,t}",
    ("compiles", "exact", "unavailable", "__call__"),
)
declare_family("weighting", "reduction of per-example losses, possibly learned", ("__call__",))
declare_family("time_sampler", "distributions of the (s, t) pairs of a batch", ("__call__",))
declare_family("backbone", "networks (x, s, t) -> (batch, heads, *shape)", ("forward",))
declare_family(
    "dataset",
    "data sources with their shape: drawn from memory (`sample`) or streamed from shards (`stream`)",
    ("data_shape", "num_classes"),
)
declare_family("metric", "sample-quality measures against a dataset", ("name", "__call__"))
declare_family("features", "fixed image feature extractors for Fréchet distances", ("name", "dim", "__call__"))
declare_family("teacher", "the network that supplies self-distillation targets", ("flow_map",))
declare_family("coupling", "how a batch pairs noise with data: independent, mini-batch OT", ("__call__",))
declare_family("logger", "experiment trackers a run logs to besides metrics.jsonl", ("open",))
declare_family("warm_start", "initial weights of the student from a model the user has", ("apply",))
declare_family(
    "conditioning",
    "what the network sees besides (x, s, t): classes, guidance scales",
    ("__call__", "backbone_options", "unconditional", "given"),
)
declare_family("sampler", "how a trained map turns noise into samples in k steps", ("__call__",))
declare_family("optimizer", "torch.optim optimisers, built on the trained parameters", ("step", "zero_grad"))
declare_family("lr_schedule", "learning-rate multiplier as a function of the step", ("__call__",))
declare_family(
    "exact",
    "closed-form flows with exact velocity and flow map (ground truth)",
    ("data_shape", "velocity", "flow_map", "mean_velocity", "sample_data"),
)

__all__ = [
    "Backbone",
    "Batch",
    "ChecksRun",
    "Coefficients",
    "Conditioning",
    "Coupling",
    "Dataset",
    "DensityDataset",
    "Derivative",
    "Draw",
    "ExactFlow",
    "FeatureExtractor",
    "FlowMapLike",
    "HasTangentPass",
    "Interpolant",
    "InterpolantPoint",
    "LabelledDensityDataset",
    "LRSchedule",
    "LogSession",
    "Logger",
    "Metric",
    "Objective",
    "ObjectiveInput",
    "ObjectiveOutput",
    "Parameterisation",
    "Sampler",
    "StopGradient",
    "StreamingDataset",
    "StreamRequest",
    "Teacher",
    "WarmStart",
    "VelocitySource",
    "TimeSample",
    "TimeSampler",
    "Weighting",
]
