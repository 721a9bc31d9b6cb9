"""Score few-step sampling: a metric at 1, 2, 4, 8, 16 flow-map steps, next to its noise floor.

Every network and step count starts from the same noise (common random numbers), so
differences between rows are differences between models, not between draws. The noise
floor is the metric of as many true samples: the best any model can score. Baseline
samplers (ODE solvers of the map's diagonal velocity) are scored at the same numbers of
network evaluations (NFE) as the flow map's step counts.
"""

import math
from collections.abc import Mapping

import attrs
import gin
import torch
from tqdm.auto import tqdm

from flowmap_core import cards, validators
from flowmap_core.cards import Card
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import (
    Batch,
    Conditioning,
    Dataset,
    Interpolant,
    LabelledDensityDataset,
    Metric,
    Sampler,
    StreamingDataset,
)
from flowmap_core.scores import FLOW_MAP, Row, Table

GUIDED = "guided"


@gin.register("evaluate")
@attrs.frozen(kw_only=True)
class EvalSpec:
    """How runs are scored (gin `evaluate.<field>`): the metric, step counts, sample size.

    Samples are drawn `chunk` at a time: small chunks keep the activations in cache and
    avoid allocating and faulting in fresh pages for every layer.

    `baselines` are more samplers (e.g. `@sampler.ode()` with Euler or Heun) scored at
    the same NFE as each flow-map step count (a sampler of `nfe_per_step` = 2 takes k / 2
    steps; where k is not a multiple, the score is missing). `real` is the data the noise
    floor is measured on: by default fresh draws of the training dataset; a streamed
    dataset needs its held-out split here (`@real/dataset.shards()`), read in order.
    `progress` shows a bar per sampler and step count. With `quantise` (the default),
    images (samples shaped `(n, channels, height, width)` in [-1, 1]) are clipped and
    rounded to the 256 levels of 8-bit pixels before they are scored, as pytorch-fid and
    clean-fid score images read from 8-bit files (`score`); other data is scored as is.
    """

    config_name = "evaluate"

    metric: Metric = gin.REQUIRED
    sampler: Sampler = gin.REQUIRED
    step_counts: tuple[int, ...] = attrs.field(default=(1, 2, 4, 8, 16), converter=tuple)
    num_samples: int = attrs.field(default=200_000, validator=validators.positive_integer)
    chunk: int = attrs.field(default=8192, validator=validators.positive_integer)
    plot_samples: int = attrs.field(default=20_000, validator=validators.positive_integer)
    seed: int = attrs.field(default=1234, validator=validators.integer)
    guidance_scales: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    guidance_samples: int = attrs.field(default=40_000, validator=validators.positive_integer)
    baselines: tuple[Sampler, ...] = attrs.field(default=(), converter=tuple)
    real: Dataset | StreamingDataset | None = None
    progress: bool = False
    quantise: bool = True

    def __attrs_post_init__(self) -> None:
        if self.metric is gin.REQUIRED or self.sampler is gin.REQUIRED:
            missing = [name for name in ("metric", "sampler") if getattr(self, name) is gin.REQUIRED]
            raise ValueError(f"evaluate.{missing[0]} is required: bind it in a gin file (base/ or datasets/)")
        if not self.step_counts or min(self.step_counts) < 1:
            raise ValueError(f"evaluate.step_counts must be positive integers, got {self.step_counts}")

    def score(self, samples: torch.Tensor, dataset: object) -> float:
        """The metric of `samples` against `dataset`; latents decoded to images (`images`) and
        images quantised to 8 bits (`quantise`) first."""
        samples, dataset = self.images(samples, dataset), as_images(dataset)
        if self.quantise and samples.dim() == 4:
            samples = quantised(samples)
        return self.metric(samples, dataset)

    def card(self, dataset: object, num_samples: int, images: bool) -> Card:
        """How this evaluation measures `num_samples` samples against `dataset` (`flowmap_core.cards`)."""
        view = as_images(dataset)
        card_fields = getattr(self.metric, "card_fields", None)
        fields = card_fields(view) if callable(card_fields) else {"reference": cards.describe_dataset(view)}
        return Card(
            metric=getattr(self.metric, "name", type(self.metric).__name__),
            num_samples=num_samples,
            seed=self.seed,
            quantised=self.quantise and images,
            **fields,
        )

    @staticmethod
    def images(samples: torch.Tensor, dataset: object) -> torch.Tensor:
        """`samples` of a latent dataset decoded through its VAE (`Shards.images`); others as they are."""
        view = as_images(dataset)
        if view is dataset or tuple(samples.shape[1:]) != tuple(dataset.data_shape):
            return samples
        return view.decode(samples)


def as_images(dataset: object) -> object:
    """The dataset as the images it stands for: latent shards seen through their VAE, else itself."""
    images = getattr(dataset, "images", None)
    return images() if callable(images) else dataset


def quantised(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] clipped and rounded to the 256 levels of an 8-bit pixel, k / 127.5 - 1."""
    return torch.round((images.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


@attrs.frozen
class EvalResult:
    """Scores per network name and step count, the noise floor, and a few samples to plot."""

    metric: str
    step_counts: tuple[int, ...]
    scores: dict[str, dict[int, float]]
    noise_floor: float
    num_samples: int
    samples: dict[str, dict[int, torch.Tensor]]

    baselines: tuple[str, ...] = ()
    sampler: str = FLOW_MAP
    labels: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    seed: int = 0
    card: Card | None = None

    def to_table(self) -> Table:
        """The scores as data: a row per weights and sampler (`labels` gives each row's pair; a
        row without one is weights of the evaluation's sampler), one column per step count
        (per NFE when baselines are scored)."""
        rows = []
        for name, row in self.scores.items():
            weights, sampler = self.labels.get(name, (name, FLOW_MAP))
            rows.append(Row(weights=weights, sampler=sampler, values=[row[k] for k in self.step_counts]))
        return Table(
            metric=self.metric,
            unit="NFE" if self.baselines else "steps",
            counts=self.step_counts,
            rows=rows,
            noise_floor=self.noise_floor,
            num_samples=self.num_samples,
            seed=self.seed,
            sampler=self.sampler,
            card=self.card,
        )


def sample_all(
    spec: EvalSpec,
    X: FlowMap,
    x0: torch.Tensor,
    steps: int,
    interpolant: Interpolant,
    device: torch.device,
    sampler: Sampler | None = None,
    desc: str = "",
) -> torch.Tensor:
    """`steps` steps of `sampler` (default: the evaluation's) from each chunk of `x0`, on the CPU;
    a stochastic sampler draws from a generator seeded `spec.seed + steps`."""
    noise = torch.Generator(device=device).manual_seed(spec.seed + steps)
    sampler = spec.sampler if sampler is None else sampler
    chunks = [
        sampler(X, x0_chunk, steps, interpolant=interpolant, generator=noise).x.cpu()
        for x0_chunk in tqdm(x0.split(spec.chunk), desc=desc, disable=not spec.progress, leave=False)
    ]
    return torch.cat(chunks)


def real_samples(spec: EvalSpec, dataset: Dataset | StreamingDataset, generator: torch.Generator) -> torch.Tensor:
    """`spec.num_samples` true samples for the noise floor: `spec.real`'s, else the dataset's."""
    source = dataset if spec.real is None else spec.real
    if isinstance(source, StreamingDataset):
        if spec.real is None:
            raise ValueError(
                f"evaluate.real is required for a streamed dataset ({type(dataset).__name__}): bind its held-out "
                "split, e.g. evaluate.real = @real/dataset.shards() and real/dataset.shards.url = '.../test'"
            )
        return source.read(spec.num_samples).x1
    return source.sample(spec.num_samples, generator=generator, device=torch.device("cpu"), dtype=torch.float64).x1


def draws(
    spec: EvalSpec, dataset: Dataset, *, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The true samples of the noise floor and the noise every sampler starts from, both drawn
    from `spec.seed`, so any tool that scores a run sees the evaluation's own noise."""
    generator = torch.Generator().manual_seed(spec.seed)
    truth = real_samples(spec, dataset, generator)
    return truth, _noise(spec, dataset, generator, device=device, dtype=dtype)


def noise(
    spec: EvalSpec, dataset: Dataset | StreamingDataset, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The noise of `draws`, without keeping its true samples (a streamed dataset's are not read:
    they do not touch the generator)."""
    generator = torch.Generator().manual_seed(spec.seed)
    if not isinstance(dataset if spec.real is None else spec.real, StreamingDataset):
        real_samples(spec, dataset, generator)
    return _noise(spec, dataset, generator, device=device, dtype=dtype)


def _noise(
    spec: EvalSpec, dataset: Dataset, generator: torch.Generator, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    shape = (spec.num_samples, *dataset.data_shape)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def sampler_label(sampler: Sampler) -> str:
    """How a baseline sampler is named in a table: `heun ODE`."""
    return getattr(sampler, "label", type(sampler).__name__)


def baseline_name(weights: str, sampler: Sampler) -> str:
    """The row name of a baseline sampler: `ema_0.999, heun ODE`."""
    return Row(weights=weights, sampler=sampler_label(sampler), values=()).name


@torch.no_grad()
def evaluate(
    spec: EvalSpec,
    flow_maps: Mapping[str, FlowMap],
    dataset: Dataset,
    *,
    interpolant: Interpolant,
    device: torch.device,
    dtype: torch.dtype,
) -> EvalResult:
    """Sample `spec.num_samples` points with each flow map at each step count and score them;
    then each baseline sampler at the same NFE."""
    truth, x0 = draws(spec, dataset, device=device, dtype=dtype)
    noise_floor = spec.score(truth, dataset)
    scores: dict[str, dict[int, float]] = {}
    kept: dict[str, dict[int, torch.Tensor]] = {}
    baselines: list[str] = []
    labels: dict[str, tuple[str, str]] = {}
    for name, X in flow_maps.items():
        baselines += [baseline_name(name, b) for b in spec.baselines]
        labels |= {baseline_name(name, b): (name, sampler_label(b)) for b in spec.baselines}
        rows = [(name, spec.sampler)] + [(baseline_name(name, b), b) for b in spec.baselines]
        for row, sampler in rows:
            scores[row], kept[row] = {}, {}
            per_step = getattr(sampler, "nfe_per_step", 1)
            for nfe in spec.step_counts:
                if nfe % per_step:
                    scores[row][nfe] = math.nan
                    continue
                samples = sample_all(spec, X, x0, nfe // per_step, interpolant, device, sampler, f"{row}, NFE {nfe}")
                scores[row][nfe] = spec.score(samples, dataset)
                kept[row][nfe] = spec.images(samples[: spec.plot_samples], dataset)
    return EvalResult(
        metric=getattr(spec.metric, "name", type(spec.metric).__name__),
        step_counts=spec.step_counts,
        scores=scores,
        noise_floor=noise_floor,
        num_samples=spec.num_samples,
        samples=kept,
        baselines=tuple(baselines),
        sampler=getattr(spec.sampler, "label", FLOW_MAP),
        labels=labels,
        seed=spec.seed,
        card=spec.card(dataset, spec.num_samples, images=truth.dim() == 4 or x0.dim() == 4),
    )


@attrs.frozen
class ClassOf:
    """One class of a labelled density dataset, as a density dataset of its own."""

    dataset: LabelledDensityDataset
    label: int

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.dataset.data_shape

    @property
    def num_classes(self) -> None:
        return None

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        return self.dataset.class_sample(self.label, n, generator=generator, device=device, dtype=dtype)

    def bin_probabilities(self, edges_x: torch.Tensor, edges_y: torch.Tensor) -> torch.Tensor:
        return self.dataset.class_bin_probabilities(self.label, edges_x, edges_y)


@attrs.frozen
class GuidedResult:
    """Class-conditional scores per guidance scale and step count, their noise floor, and
    labelled samples to plot. `pooled`: each score is of all classes' samples together
    against the data (images); otherwise each class is scored against its own density and
    the scores are averaged (labelled 2D densities), except at w = 0, where each class is
    scored against the whole density, whose own samples of a class's size give `edge_floor`."""

    metric: str
    step_counts: tuple[int, ...]
    scales: tuple[float, ...]
    scores: dict[float, dict[int, float]]
    noise_floor: float
    samples: dict[float, dict[int, tuple[torch.Tensor, torch.Tensor]]]
    pooled: bool = False
    edge_floor: float | None = None
    weights: str = ""
    num_samples: int = 0
    seed: int = 0
    card: Card | None = None

    def to_table(self) -> Table:
        """The scores as data: a row per guidance scale, one column per step count."""
        rows = [
            Row(weights=self.weights, guidance=w, values=[self.scores[w][k] for k in self.step_counts])
            for w in self.scales
        ]
        return Table(
            kind=GUIDED,
            metric=self.metric,
            counts=self.step_counts,
            rows=rows,
            noise_floor=self.noise_floor,
            num_samples=self.num_samples,
            seed=self.seed,
            pooled=self.pooled,
            edge_floor=self.edge_floor,
            card=self.card,
        )


@torch.no_grad()
def evaluate_guided(
    spec: EvalSpec,
    X: FlowMap,
    conditioning: Conditioning,
    dataset: Dataset | StreamingDataset,
    *,
    interpolant: Interpolant,
    device: torch.device,
    dtype: torch.dtype,
    weights: str = "",
) -> GuidedResult:
    """Sample each class at each guidance scale and step count, `spec.guidance_samples` in all
    (the same noise for every class). A labelled density (`class_bin_probabilities`) scores
    each class against its own density and averages over classes, except at w = 0, where
    b^0 = b(x, null) carries no class: there each class is scored against the whole density,
    beside its own samples of a class's size (pooling the classes would not do: every class
    starts from the same noise, so at w = 0 their samples nearly coincide); any other labelled dataset
    (images) scores the class-balanced set against the data, beside held-out data of the
    same size (`real_samples`) as the noise floor."""
    classes = dataset.num_classes
    per_class = spec.guidance_samples // classes
    generator = torch.Generator().manual_seed(spec.seed)
    pooled = not isinstance(dataset, LabelledDensityDataset)
    edge_floor = None
    if pooled:
        truth = real_samples(attrs.evolve(spec, num_samples=per_class * classes), dataset, generator)
        noise_floor = spec.score(truth, dataset)
    else:
        floors = []
        for label in range(classes):
            truth = dataset.class_sample(label, per_class, generator=generator, device=torch.device("cpu"), dtype=dtype)
            floors.append(spec.score(truth.x1, ClassOf(dataset, label)))
        noise_floor = sum(floors) / classes
        if 0 in spec.guidance_scales:
            whole = dataset.sample(per_class, generator=generator, device=torch.device("cpu"), dtype=dtype)
            edge_floor = spec.score(whole.x1, dataset)
    x0 = torch.randn((per_class, *dataset.data_shape), generator=generator).to(device=device, dtype=dtype)
    scores: dict[float, dict[int, float]] = {}
    kept: dict[float, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
    keep = max(spec.plot_samples // classes, 1)
    for w in spec.guidance_scales:
        scores[w], kept[w] = {}, {}
        for steps in spec.step_counts:
            values, every, points, labels = [], [], [], []
            for label in range(classes):
                cond = {k: v.to(device) for k, v in conditioning.given(label, w).items()}
                desc = f"w = {w:g}, class {label}, {steps} steps"
                samples = sample_all(spec, X.with_cond(**cond), x0, steps, interpolant, device, desc=desc)
                if pooled:
                    every.append(samples)
                else:  # at w = 0 the guided velocity is b(x, null): the target is the whole density
                    values.append(spec.score(samples, dataset if w == 0 else ClassOf(dataset, label)))
                points.append(spec.images(samples[:keep], dataset))
                labels.append(torch.full((min(keep, len(samples)),), label))
            scores[w][steps] = spec.score(torch.cat(every), dataset) if pooled else sum(values) / classes
            kept[w][steps] = (torch.cat(points), torch.cat(labels))
    return GuidedResult(
        metric=getattr(spec.metric, "name", type(spec.metric).__name__),
        step_counts=spec.step_counts,
        scales=spec.guidance_scales,
        scores=scores,
        noise_floor=noise_floor,
        samples=kept,
        pooled=pooled,
        edge_floor=edge_floor,
        weights=weights,
        num_samples=per_class * classes,
        seed=spec.seed,
        card=spec.card(dataset, per_class * classes, images=x0.dim() == 4),
    )
