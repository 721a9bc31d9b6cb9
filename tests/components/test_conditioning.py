"""Conditioning: label dropout, guidance scales, and the inputs for sampling."""

import pytest
import torch

from flowmap_components.conditioning.class_label import NULL
from flowmap_core import registry
from flowmap_core.protocols import Batch
from tests.instances import instances

CPU = torch.device("cpu")


def labelled_batch(n=20_000):
    dataset = registry.build("dataset", "gaussian_mixture")
    return dataset, dataset.sample(n, generator=torch.Generator().manual_seed(0), device=CPU, dtype=torch.float32)


@pytest.mark.parametrize("name, conditioning", instances("conditioning"))
def test_conditioning_contract(name, conditioning):
    dataset, batch = labelled_batch(100)
    cond = conditioning(batch, generator=torch.Generator().manual_seed(0))
    assert all(v.shape == (100,) for v in cond.values())
    options = conditioning.backbone_options(dataset)
    net = registry.build("backbone", "mlp", data_shape=(2,), width=16, depth=1, **options)
    assert net(batch.x1, torch.rand(100), torch.rand(100), **cond).shape == (100, 1, 2)
    unconditional = conditioning.unconditional()
    assert set(unconditional) == set(cond) and all(v.dim() == 0 for v in unconditional.values())


def test_label_dropout_share():
    _, batch = labelled_batch()
    conditioning = registry.build("conditioning", "class_label", dropout=0.25)
    cond = conditioning(batch, generator=torch.Generator().manual_seed(0))
    dropped = (cond["label"] == NULL).double().mean().item()
    assert abs(dropped - 0.25) < 0.01
    kept = cond["label"] != NULL
    assert torch.equal(cond["label"][kept], batch.label[kept])


def test_label_dropout_on_flow_matching_rows_only():
    """dropout_rows = 'diagonal' (shortcut models' official code): the first n_diagonal rows lose
    labels as under 'all', with the same draws; the bootstrap rows keep theirs."""
    _, batch = labelled_batch()
    everywhere = registry.build("conditioning", "class_label", dropout=0.25)
    diagonal = registry.build("conditioning", "class_label", dropout=0.25, dropout_rows="diagonal")
    k = 3 * len(batch) // 4
    all_rows = everywhere(batch, generator=torch.Generator().manual_seed(0), n_diagonal=k)["label"]
    fm_rows = diagonal(batch, generator=torch.Generator().manual_seed(0), n_diagonal=k)["label"]
    assert torch.equal(fm_rows[:k], all_rows[:k]) and (fm_rows[:k] == NULL).any()
    assert torch.equal(fm_rows[k:], batch.label[k:]) and (all_rows[k:] == NULL).any()
    with pytest.raises(ValueError, match="needs the number of flow-matching rows"):
        diagonal(batch, generator=torch.Generator())
    with pytest.raises(ValueError, match="dropout_rows must be one of"):
        registry.build("conditioning", "class_label", dropout_rows="bootstrap")


def test_guidance_scales_are_drawn_in_range():
    _, batch = labelled_batch()
    guided = registry.build("conditioning", "guided", scales=(0.5, 3.0))
    w = guided(batch, generator=torch.Generator().manual_seed(0))["guidance"]
    assert 0.5 <= w.min() and w.max() <= 3.0 and abs(w.mean().item() - 1.75) < 0.02
    assert guided.given(3, 2.0) == {"label": torch.tensor(3), "guidance": torch.tensor(2.0)}


def test_guidance_edge_fraction_draws_w0_with_another_examples_label():
    _, batch = labelled_batch()
    guided = registry.build("conditioning", "guided", scales=(0.0, 3.0), edge_fraction=0.25, dropout=0.0)
    cond = guided(batch, generator=torch.Generator().manual_seed(0))
    w, label = cond["guidance"], cond["label"]
    edge = w == 0.0
    assert abs(edge.double().mean().item() - 0.25) < 0.02
    assert 0.0 <= w.min() and w.max() <= 3.0 and abs(w[~edge].mean().item() - 1.5) < 0.03
    assert torch.equal(label[~edge], batch.label[~edge])
    own = (label[edge] == batch.label[edge]).double().mean().item()
    assert abs(own - 1 / 8) < 0.03  # eight balanced classes: a random label is the own one 1/8 of the time
    assert torch.equal(torch.bincount(label[edge], minlength=8) > 0, torch.ones(8, dtype=torch.bool))
    with pytest.raises(ValueError, match="start them at 0"):
        registry.build("conditioning", "guided", scales=(0.5, 3.0), edge_fraction=0.1)


def test_unlabelled_data_is_refused():
    dataset = registry.build("dataset", "gaussian")
    batch = dataset.sample(4, generator=torch.Generator(), device=CPU, dtype=torch.float32)
    with pytest.raises(ValueError, match="labelled dataset"):
        registry.build("conditioning", "class_label")(batch, generator=torch.Generator())
    with pytest.raises(ValueError, match="has no classes"):
        registry.build("conditioning", "guided").backbone_options(dataset)
    with pytest.raises(ValueError, match="unconditional"):
        registry.build("conditioning", "none").given(1)
    assert Batch(x1=batch.x1).label is None
