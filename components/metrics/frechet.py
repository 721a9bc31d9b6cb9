"""The Fréchet distance between image sets, in the feature space of a fixed network.

Each set of features is summarised by a Gaussian (mean mu, covariance S), and two sets
are compared by the Fréchet (2-Wasserstein) distance between their Gaussians (Dowson and
Landau 1982; FID, Heusel et al. 2017, is this distance in Inception-v3 features):

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2}).

Everything is computed in float64 on the CPU, whatever the features' dtype and device.
"""

from collections.abc import Iterable

import attrs
import torch
from torch import Tensor
from tqdm import tqdm

from flowmap_core import cards
from flowmap_core.protocols import Batch, FeatureExtractor, StreamingDataset
from flowmap_core.registry import register
from flowmap_core.validators import integer, positive_integer


@attrs.frozen(kw_only=True, eq=False)
class GaussianStats:
    """Mean `(dim,)`, covariance `(dim, dim)` (divided by count - 1; zero for one vector) and
    count of a set of feature vectors, in float64.

    Build with `of(features)` for one batch, `accumulate(batches)` for many, or merge two
    summaries of disjoint sets with `merge`. Merging uses the pairwise update of Chan,
    Golub and LeVeque (1979): with delta = mu_b - mu_a and n = n_a + n_b,

        mu = mu_a + delta n_b / n,     M = M_a + M_b + delta delta^T n_a n_b / n,

    where M = (count - 1) S is the sum of outer products of deviations from the mean. It
    never forms raw sums of squares, so features with a large common offset lose no precision.
    """

    mean: Tensor
    covariance: Tensor
    count: int

    def __attrs_post_init__(self) -> None:
        dim = self.mean.shape[-1] if self.mean.dim() == 1 else -1
        if self.mean.dim() != 1 or self.covariance.shape != (dim, dim) or self.count < 1:
            raise ValueError(
                f"GaussianStats needs a mean (dim,), a covariance (dim, dim) and count >= 1; got mean "
                f"{tuple(self.mean.shape)}, covariance {tuple(self.covariance.shape)}, count {self.count}"
            )

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @classmethod
    def of(cls, features: Tensor) -> "GaussianStats":
        """The mean and covariance of the rows of `features` `(n, dim)`, n >= 1."""
        if features.dim() != 2 or features.shape[0] < 1:
            raise ValueError(f"GaussianStats.of needs features shaped (n >= 1, dim); got {tuple(features.shape)}")
        x = features.detach().to(device="cpu", dtype=torch.float64)
        mean = x.mean(dim=0)
        centred = x - mean
        n = x.shape[0]
        scatter = centred.T @ centred
        return cls(mean=mean, covariance=scatter / (n - 1) if n > 1 else scatter, count=n)

    @classmethod
    def accumulate(cls, batches: Iterable[Tensor]) -> "GaussianStats":
        """The statistics of all rows of the feature batches, merged batch by batch."""
        total = None
        for features in batches:
            stats = cls.of(features)
            total = stats if total is None else total.merge(stats)
        if total is None:
            raise ValueError("GaussianStats.accumulate got no feature batches")
        return total

    def merge(self, other: "GaussianStats") -> "GaussianStats":
        """The statistics of the union of the two (disjoint) sets these summarise."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of {self.dim}-d and {other.dim}-d features")
        n_a, n_b = self.count, other.count
        n = n_a + n_b
        delta = other.mean - self.mean
        scatter = (
            self.covariance * (n_a - 1) + other.covariance * (n_b - 1) + torch.outer(delta, delta) * (n_a * n_b / n)
        )
        return GaussianStats(mean=self.mean + delta * (n_b / n), covariance=scatter / (n - 1), count=n)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """The symmetric PSD square root of a symmetric matrix, negative eigenvalues (rounding) clipped to 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr (S_a S_b)^{1/2}, in float64.

    The eigenvalues of S_a S_b are those of (S_a^{1/2} S_b^{1/2})(S_a^{1/2} S_b^{1/2})^T, so
    tr (S_a S_b)^{1/2} is the sum of the singular values of S_a^{1/2} S_b^{1/2}, where the
    symmetric square roots come from eigendecompositions with rounding-negative eigenvalues
    clipped to 0. Singular values carry an absolute error of about 1e-16 |S| even where
    they are tiny (rank-deficient covariances: fewer vectors than dimensions), whereas the
    square roots of small eigenvalues of a product would carry about 1e-8 |S| each. The
    result is clipped at 0 (identical sets give 0 up to rounding).
    """
    if a.dim != b.dim:
        raise ValueError(f"cannot compare statistics of {a.dim}-d and {b.dim}-d features")
    mean_term = float(((a.mean - b.mean) ** 2).sum())
    cross = torch.linalg.svdvals(_psd_sqrt(a.covariance) @ _psd_sqrt(b.covariance)).sum()
    trace_term = float(torch.trace(a.covariance) + torch.trace(b.covariance) - 2 * cross)
    return max(mean_term + trace_term, 0.0)


def _check_extractor(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, FeatureExtractor):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a feature extractor (a `features` component with "
            f"name, dim and __call__(images) -> (n, dim)), got {type(value).__name__}"
        )


@attrs.define(frozen=True)
class _Reference:
    """A dataset's reference statistics, held with the dataset so its id is not reused."""

    dataset: object
    stats: GaussianStats


@register("metric", "frechet")
@attrs.define(frozen=True, kw_only=True)
class FrechetDistance:
    """Fréchet distance between generated images and the dataset's images in a feature space:
    |mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^{1/2}) over the features of the samples (g)
    and of the dataset's first `reference_size` images (r); lower is better.

    The metric is named `fd_<features>` (`fd_classifier`, `fd_inception_v3`, ...): it is FID
    only in Inception-v3 features. Features are computed `batch` images at a time on the
    samples' device; the reference statistics are computed once per dataset and size, then
    reused (`reference_stats`). The reference images are `dataset.read(n)` for a streaming
    dataset (the first n of one unshuffled pass) and `dataset.sample(n)` with the seed
    `reference_seed` otherwise. The distance is biased upward at finite sizes: compare
    scores at equal sample counts, next to the distance between two sets of real images.

    In gin::

        evaluate.metric = @metric.frechet()
        metric.frechet.features = @features.classifier()
        features.classifier.weights = "~/.cache/flowmap/feature_nets/<hash>"
    """

    features: FeatureExtractor = attrs.field(validator=_check_extractor)
    batch: int = attrs.field(default=256, validator=positive_integer)
    reference_size: int = attrs.field(default=10_000, validator=positive_integer)
    reference_seed: int = attrs.field(default=0, validator=integer)
    progress: bool = True
    name: str = attrs.field(init=False, default="")
    _references: dict[tuple[int, int], _Reference] = attrs.field(init=False, factory=dict, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "name", f"fd_{self.features.name}")

    def card_fields(self, dataset: object) -> dict:
        """What a score's card records of this metric: the features, a hash of their network's
        weights, the reference set, its size and a hash of its statistics, the resize."""
        network = cards.network_of(self.features)
        stats = self.reference_stats(dataset)
        return {
            "features": self.features.name,
            "features_sha256": None if network is None else cards.module_sha256(network),
            "reference": cards.describe_dataset(dataset),
            "reference_count": int(stats.count),
            "reference_sha256": cards.tensors_sha256({"mean": stats.mean, "covariance": stats.covariance}),
            "resized": getattr(self.features, "resolution", None),
        }

    def stats(self, images: Tensor, *, device: torch.device | None = None, what: str = "images") -> GaussianStats:
        """Gaussian statistics of the features of `images` `(n, C, H, W)` in [-1, 1], computed
        `batch` images at a time on `device` (default: the images' own)."""
        if images.dim() != 4 or images.shape[0] < 2:
            raise ValueError(
                f"{self.name} scores image batches shaped (n >= 2, channels, height, width); got {what} of shape "
                f"{tuple(images.shape)}"
            )
        disable = None if self.progress else True  # None: shown on a terminal only
        with tqdm(total=images.shape[0], desc=f"{self.name}: {what}", unit="img", disable=disable, leave=False) as bar:
            total = None
            for chunk in images.split(self.batch):
                stats = GaussianStats.of(self.features(chunk.to(device=device or chunk.device, dtype=torch.float32)))
                total = stats if total is None else total.merge(stats)
                bar.update(chunk.shape[0])
        return total

    def reference_stats(
        self, dataset: object, n: int | None = None, *, device: torch.device | None = None
    ) -> GaussianStats:
        """Statistics of the features of `n` (default `reference_size`) of the dataset's images,
        computed on `device` (default CPU) at the first call and cached per (dataset, n)."""
        n = self.reference_size if n is None else n
        key = (id(dataset), n)
        cached = self._references.get(key)
        if cached is not None and cached.dataset is dataset:
            return cached.stats
        batch = self._reference_images(dataset, n)
        stats = self.stats(batch.x1, device=device, what="reference images")
        self._references[key] = _Reference(dataset=dataset, stats=stats)
        return stats

    def _reference_images(self, dataset: object, n: int) -> Batch:
        if isinstance(dataset, StreamingDataset):
            return dataset.read(n)
        if hasattr(dataset, "sample"):
            generator = torch.Generator().manual_seed(self.reference_seed)
            return dataset.sample(n, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
        raise TypeError(
            f"{self.name} needs reference images from the dataset (read(n) or sample(n)); {type(dataset).__name__} "
            "has neither"
        )

    def __call__(self, samples: Tensor, dataset: object) -> float:
        """The Fréchet distance between the features of `samples` `(n, C, H, W)` and the reference's."""
        shape = tuple(getattr(dataset, "data_shape", samples.shape[1:]))
        if tuple(samples.shape[1:]) != shape:
            raise ValueError(
                f"{self.name}: samples of shape {tuple(samples.shape)} do not match the dataset's images {shape}"
            )
        generated = self.stats(samples, what="samples")
        return frechet_distance(generated, self.reference_stats(dataset, device=samples.device))
