"""Couplings: mini-batch OT is a permutation of the noise, never costs more than the independent
pairing, leaves a batch already in OT order as it is, and pairs within classes or blocks when asked."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmap_components.couplings.independent import Independent
from flowmap_components.couplings.optimal_transport import OptimalTransport
from flowmap_core import cli, config

batches = st.tuples(st.integers(2, 40), st.integers(1, 6), st.integers(0, 2**31 - 1))


def draw(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), 3 * torch.rand(n, d, generator=g, dtype=torch.float64)


def cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return float(((x0 - x1) ** 2).sum())


@settings(max_examples=25, deadline=None)
@given(batches)
def test_ot_is_a_cheaper_permutation_and_fixes_a_batch_in_ot_order(batch):
    x0, x1 = draw(*batch)
    paired = OptimalTransport()(x0, x1, None)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x0.tolist()))
    assert cost(paired, x1) <= cost(x0, x1) + 1e-9
    assert torch.equal(OptimalTransport()(paired, x1, None), paired)
    assert torch.equal(Independent()(x0, x1, None), x0)


@settings(max_examples=15, deadline=None)
@given(batches, st.integers(1, 3))
def test_class_aware_ot_pairs_within_each_class(batch, classes):
    x0, x1 = draw(*batch)
    label = torch.arange(len(x0)) % classes
    paired = OptimalTransport(class_aware=True)(x0, x1, label)
    for value in range(classes):
        rows = label == value
        assert sorted(map(tuple, paired[rows].tolist())) == sorted(map(tuple, x0[rows].tolist()))
        assert cost(paired[rows], x1[rows]) <= cost(x0[rows], x1[rows]) + 1e-9


@settings(max_examples=15, deadline=None)
@given(batches, st.integers(1, 12))
def test_block_ot_pairs_within_each_block_and_is_whole_ot_for_one_block(batch, block_size):
    x0, x1 = draw(*batch)
    paired = OptimalTransport(block_size=block_size)(x0, x1, None)
    for start in range(0, len(x0), block_size):
        rows = slice(start, start + block_size)
        assert sorted(map(tuple, paired[rows].tolist())) == sorted(map(tuple, x0[rows].tolist()))
        assert torch.equal(paired[rows], OptimalTransport()(x0[rows], x1[rows], None))
    assert torch.equal(OptimalTransport(block_size=len(x0))(x0, x1, None), OptimalTransport()(x0, x1, None))


def test_images_are_paired_as_flat_vectors():
    x0, x1 = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    paired = OptimalTransport()(x0, x1, None)
    assert paired.shape == x0.shape and cost(paired, x1) <= cost(x0, x1) + 1e-5


def test_a_run_trains_with_the_ot_coupling(tmp_path):
    argv = ["train", str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin"), "--run-dir", str(tmp_path / "run")]
    bindings = ["train.coupling = @coupling.ot()", "train.steps = 3"]
    assert cli.main([*argv, "--no-eval", "--no-progress", *[a for b in bindings for a in ("--gin", b)]]) == 0
