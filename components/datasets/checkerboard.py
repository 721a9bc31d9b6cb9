"""The 2D checkerboard of the paper's Table 1, exactly as the official code draws it."""

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import Batch
from flowmap_core.registry import register


def _overlap(edges: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Length of [edges[i], edges[i+1]] intersected with [low[k], high[k]]: `(bins, k)`."""
    left = torch.maximum(edges[:-1, None], low[None, :])
    right = torch.minimum(edges[1:, None], high[None, :])
    return (right - left).clamp(min=0)


@register("dataset", "checkerboard")
@attrs.define(frozen=True, kw_only=True)
class Checkerboard:
    """8 squares of side 2 in [-4, 4]^2, density 1/32 on each; labels are the square index.

    x1 ~ U(-2, 2), x2 = U(0, 1) - 2 randint(0, 2) + (floor(x1) mod 2), both times 2.
    """

    data_shape: tuple[int, ...] = attrs.field(default=(2,), init=False)
    num_classes: int | None = attrs.field(default=8, init=False)

    def squares(self) -> tuple[Tensor, Tensor]:
        """Lower-left corners `(8, 2)` of the squares (in label order) and their side."""
        corners = [(x, y) for x in (-4, -2, 0, 2) for y in (-4, -2, 0, 2) if ((x + y) // 2) % 2 == 0]
        return torch.tensor(corners, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        on = generator.device
        x1 = 4 * torch.rand(n, generator=generator, device=on, dtype=torch.float64) - 2
        lower = torch.randint(0, 2, (n,), generator=generator, device=on)
        x2 = torch.rand(n, generator=generator, device=on, dtype=torch.float64) - 2 * lower + torch.floor(x1) % 2
        points = 2 * torch.stack([x1, x2], dim=1)
        return Batch(x1=points.to(device=device, dtype=dtype), label=self.label_of(points).to(device))

    def label_of(self, points: Tensor) -> Tensor:
        """Index of the square containing each point."""
        corners, side = self.squares()
        inside = (points[:, None, :] >= corners.to(points)) & (points[:, None, :] < corners.to(points) + side)
        return inside.all(dim=2).to(torch.int64).argmax(dim=1)

    def _areas(self, edges_x: Tensor, edges_y: Tensor) -> tuple[Tensor, Tensor]:
        corners, side = self.squares()
        area_x = _overlap(edges_x.double(), corners[:, 0], corners[:, 0] + side)
        area_y = _overlap(edges_y.double(), corners[:, 1], corners[:, 1] + side)
        return area_x, area_y

    def bin_probabilities(self, edges_x: Tensor, edges_y: Tensor) -> Tensor:
        area_x, area_y = self._areas(edges_x, edges_y)
        return torch.einsum("ik,jk->ij", area_x, area_y) / 32.0

    def class_bin_probabilities(self, label: int, edges_x: Tensor, edges_y: Tensor) -> Tensor:
        """Exact bin probabilities of square `label` alone (density 1/4 on it)."""
        area_x, area_y = self._areas(edges_x, edges_y)
        return torch.outer(area_x[:, label], area_y[:, label]) / 4.0

    def class_sample(
        self, label: int, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype
    ) -> Batch:
        """`n` points uniform on square `label`."""
        corners, side = self.squares()
        u = torch.rand((n, 2), generator=generator, device=generator.device, dtype=torch.float64)
        points = corners[label].to(u.device) + side * u
        return Batch(x1=points.to(device=device, dtype=dtype), label=torch.full((n,), label, device=device))
