"""The Fréchet distance between Gaussians: closed forms, estimation from samples, batching,
and the `frechet` metric on images through a stand-in feature extractor."""

import math

import attrs
import numpy as np
import pytest
import scipy.linalg
import torch

from flowmap_components.metrics.frechet import FrechetDistance, GaussianStats, frechet_distance
from flowmap_core import registry
from flowmap_core.protocols import Batch

F64 = torch.float64


def rotation(dim: int, seed: int) -> torch.Tensor:
    """A random orthogonal matrix (QR of a Gaussian matrix)."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=F64))
    return q


def exact(mean: torch.Tensor, covariance: torch.Tensor) -> GaussianStats:
    return GaussianStats(mean=mean, covariance=covariance, count=1_000_000)


def random_covariance(dim: int, seed: int) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=F64)


def test_commuting_covariances_match_the_closed_form():
    """S_a = Q diag(a) Q^T, S_b = Q diag(b) Q^T (non-diagonal, same eigenbasis): the trace
    term is sum (sqrt(a_i) - sqrt(b_i))^2."""
    dim = 8
    q = rotation(dim, 0)
    a = torch.linspace(0.1, 4.0, dim, dtype=F64)
    b = torch.linspace(3.0, 0.2, dim, dtype=F64)
    mu_a, mu_b = torch.arange(dim, dtype=F64), torch.ones(dim, dtype=F64)
    stats_a, stats_b = exact(mu_a, q @ torch.diag(a) @ q.T), exact(mu_b, q @ torch.diag(b) @ q.T)
    expected = float(((mu_a - mu_b) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(stats_a, stats_b) == pytest.approx(expected, abs=1e-8)
    assert frechet_distance(stats_b, stats_a) == pytest.approx(expected, abs=1e-8)


def test_non_commuting_2d_covariances_match_the_closed_form():
    """For 2 x 2 matrices, tr M^{1/2} = sqrt(tr M + 2 sqrt(det M)) for M = S_a S_b
    (its eigenvalues l1, l2 > 0: (sqrt l1 + sqrt l2)^2 = l1 + l2 + 2 sqrt(l1 l2))."""
    s_a = torch.tensor([[2.0, 0.9], [0.9, 1.0]], dtype=F64)
    s_b = torch.tensor([[0.5, -0.3], [-0.3, 3.0]], dtype=F64)
    mu = torch.tensor([1.0, -2.0], dtype=F64)
    m = s_a @ s_b
    trace_sqrt = math.sqrt(float(torch.trace(m)) + 2 * math.sqrt(float(torch.linalg.det(m))))
    expected = 5.0 + float(torch.trace(s_a + s_b)) - 2 * trace_sqrt
    got = frechet_distance(exact(mu, s_a), exact(torch.zeros(2, dtype=F64), s_b))
    assert got == pytest.approx(expected, abs=1e-8)


def test_matches_scipy_sqrtm_in_16_dimensions():
    dim = 16
    s_a, s_b = random_covariance(dim, 1), random_covariance(dim, 2)
    mu_a = torch.randn(dim, generator=torch.Generator().manual_seed(3), dtype=F64)
    root = scipy.linalg.sqrtm(s_a.numpy() @ s_b.numpy())
    assert np.abs(root.imag).max() < 1e-8
    expected = float((mu_a**2).sum()) + float(np.trace(s_a.numpy() + s_b.numpy() - 2 * root.real))
    got = frechet_distance(exact(mu_a, s_a), exact(torch.zeros(dim, dtype=F64), s_b))
    assert got == pytest.approx(expected, abs=1e-8)


def test_stats_of_samples_converge_to_the_exact_distance():
    """Sample statistics of N(mu_a, S_a) and N(mu_b, S_b): their distance approaches the exact
    one as the samples grow (the finite-sample bias is positive and shrinks)."""
    dim = 4
    s_a, s_b = random_covariance(dim, 4), random_covariance(dim, 5)
    mu_b = torch.full((dim,), 0.5, dtype=F64)
    truth = frechet_distance(exact(torch.zeros(dim, dtype=F64), s_a), exact(mu_b, s_b))
    errors = []
    for n in (1_000, 100_000):
        g = torch.Generator().manual_seed(n)
        x_a = torch.randn(n, dim, generator=g, dtype=F64) @ torch.linalg.cholesky(s_a).T
        x_b = mu_b + torch.randn(n, dim, generator=g, dtype=F64) @ torch.linalg.cholesky(s_b).T
        errors.append(abs(frechet_distance(GaussianStats.of(x_a), GaussianStats.of(x_b)) - truth))
    assert errors[1] < 0.01 * truth
    assert errors[1] < errors[0]


def test_identical_sets_give_zero_even_when_rank_deficient():
    """Fewer vectors than dimensions (a singular covariance, as with small samples of 2048-d
    features) still give ~0 for a set against itself."""
    for n, dim in [(1_000, 16), (50, 128)]:
        x = 3.0 + 10 * torch.randn(n, dim, generator=torch.Generator().manual_seed(n), dtype=F64)
        stats = GaussianStats.of(x)
        assert frechet_distance(stats, stats) < 1e-6
        assert frechet_distance(stats, GaussianStats.of(x.float())) < 1e-6


def test_shifted_sets_give_more_growing_with_the_shift():
    """Shifting every vector by c adds exactly |c|^2 (the covariance is unchanged)."""
    x = torch.randn(2_000, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    base = GaussianStats.of(x)
    distances = [frechet_distance(base, GaussianStats.of(x + shift)) for shift in (0.1, 0.5, 2.0)]
    assert distances == pytest.approx([8 * 0.01, 8 * 0.25, 8 * 4.0], rel=1e-9)
    assert distances[0] < distances[1] < distances[2]
    scaled = frechet_distance(base, GaussianStats.of(2 * x))
    assert scaled > 0.5


def test_batched_accumulation_equals_one_shot():
    x = torch.randn(301, 12, generator=torch.Generator().manual_seed(0), dtype=F64) * 5 + 2
    whole = GaussianStats.of(x)
    for size in (1, 7, 100, 301):
        batched = GaussianStats.accumulate(x.split(size))
        assert batched.count == whole.count
        torch.testing.assert_close(batched.mean, whole.mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(batched.covariance, whole.covariance, rtol=0, atol=1e-11)
    torch.testing.assert_close(whole.covariance, torch.from_numpy(np.cov(x.numpy(), rowvar=False)), rtol=0, atol=1e-11)


def test_accumulation_keeps_precision_under_a_large_offset():
    """Features offset by 1e8 (sums of squares ~1e16 per vector) keep their unit covariance:
    raw float64 sums of squares would lose it entirely."""
    x = torch.randn(4_000, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    plain = GaussianStats.of(x)
    offset = GaussianStats.accumulate((x + 1e8).split(100))
    torch.testing.assert_close(offset.covariance, plain.covariance, rtol=0, atol=1e-6)
    assert (
        frechet_distance(plain, GaussianStats(mean=offset.mean - 1e8, covariance=offset.covariance, count=4000)) < 1e-6
    )


def test_stats_reject_bad_shapes():
    with pytest.raises(ValueError, match="shaped"):
        GaussianStats.of(torch.zeros(5))
    with pytest.raises(ValueError, match="12-d and 4-d"):
        frechet_distance(GaussianStats.of(torch.randn(5, 12)), GaussianStats.of(torch.randn(5, 4)))


# ------------------------------------------------------------------- the metric on images


@attrs.define(frozen=True, kw_only=True)
class MeanPixels:
    """A stand-in feature extractor: each image's per-channel mean and its mean square."""

    name: str = "mean_pixels"
    dim: int = 2
    calls: list = attrs.field(factory=list, eq=False)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(images.shape[0])
        return torch.stack([images.mean(dim=(1, 2, 3)), (images**2).mean(dim=(1, 2, 3))], dim=1)


@attrs.define(frozen=True)
class ImageStream:
    """A streaming dataset stand-in: `read(limit)` returns the first images of a fixed set."""

    images: torch.Tensor
    data_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int | None = None
    reads: list = attrs.field(factory=list, eq=False)

    def stream(self, request):
        raise NotImplementedError

    def read(self, limit=None):
        self.reads.append(limit)
        return Batch(x1=self.images[:limit])


def images(n: int, brightness: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (brightness + 0.1 * torch.randn(n, 1, 8, 8, generator=g)).clamp(-1, 1)


def test_metric_scores_images_against_cached_reference_stats():
    features = MeanPixels()
    metric = FrechetDistance(features=features, batch=100, reference_size=500, progress=False)
    assert metric.name == "fd_mean_pixels"
    dataset = ImageStream(images(600, 0.0, 0))
    same = metric(images(300, 0.0, 1), dataset)
    darker = metric(images(300, -0.3, 2), dataset)
    darkest = metric(images(300, -0.6, 3), dataset)
    assert same < 1e-3 < darker < darkest
    assert dataset.reads == [500], "reference features are computed once per dataset"
    assert features.calls.count(100) == 5 + 3 * 3, "reference and samples go through in batches of 100"
    expected = frechet_distance(
        GaussianStats.of(features(images(300, -0.3, 2))), GaussianStats.of(features(dataset.images[:500]))
    )
    assert darker == pytest.approx(expected, rel=1e-6)


def test_metric_is_registered_and_checks_its_inputs():
    metric = registry.build("metric", "frechet", features=MeanPixels(), progress=False)
    dataset = ImageStream(images(50, 0.0, 0))
    with pytest.raises(ValueError, match=r"do not match the dataset's images \(1, 8, 8\)"):
        metric(torch.zeros(10, 1, 4, 4), dataset)
    with pytest.raises(ValueError, match="must be a feature extractor"):
        registry.build("metric", "frechet", features="inception")
    with pytest.raises(ValueError, match="metric.frechet.batch must be a positive integer"):
        registry.build("metric", "frechet", features=MeanPixels(), batch=0)
