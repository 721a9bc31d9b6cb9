"""A run's scores as data: what `scores.json` holds and `report.md` is rendered from.

A `Table` is one evaluation: a metric at each step count (or NFE) for each row (weights and
sampler, or a guidance scale), beside its noise floor, with the sample size and the seed of
the noise. `Scores` gathers a run's tables, its seed and training budget, and the flat
`{"name": number}` scores that tools add (`tool`). NaN (a sampler that cannot take an NFE)
is `null` in the file.
"""

import json
import math
from typing import Any

import attrs

from flowmap_core.cards import Card
from flowmap_core.errors import FlowmapError

FLOW_MAP = "flow map"
FORMAT = 1


class ScoresError(FlowmapError, ValueError):
    """A scores.json this flowmap cannot read."""


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(math.nan if v is None else float(v) for v in values)


def _json_floats(values: tuple[float, ...]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


@attrs.frozen(kw_only=True)
class Row:
    """The scores of one sampler of one set of weights (`guidance`: at one guidance scale), a
    value per column of its table."""

    weights: str
    sampler: str = FLOW_MAP
    guidance: float | None = None
    values: tuple[float, ...] = attrs.field(converter=_floats)

    @property
    def name(self) -> str:
        """How the row is named in a report: `ema_0.999`, `ema_0.999, heun ODE`, or the scale `2`."""
        if self.guidance is not None:
            return f"{self.guidance:g}"
        return self.weights if self.sampler == FLOW_MAP else f"{self.weights}, {self.sampler}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weights": self.weights, "sampler": self.sampler}
        if self.guidance is not None:
            out["guidance"] = self.guidance
        return out | {"values": _json_floats(self.values)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Row":
        return cls(
            weights=data["weights"],
            sampler=data.get("sampler", FLOW_MAP),
            guidance=data.get("guidance"),
            values=data["values"],
        )


@attrs.frozen(kw_only=True)
class Table:
    """One evaluation of a run. `kind` is `flow map` (rows per weights and sampler) or `guided`
    (rows per guidance scale, class-conditional); `unit` is `steps` or `NFE` (when baseline
    samplers are scored at the flow map's NFE); `sampler` is the evaluation's own sampler.
    A guided table's `pooled` says whether the classes were scored as one set, and
    `edge_floor` is the floor of w = 0 (true samples of the whole density). `card` says how
    the scores were measured (`flowmap_core.cards`; None in tables written before cards)."""

    kind: str = FLOW_MAP
    metric: str
    unit: str = "steps"
    counts: tuple[int, ...] = attrs.field(converter=tuple)
    rows: tuple[Row, ...] = attrs.field(converter=tuple)
    noise_floor: float
    num_samples: int
    seed: int
    sampler: str = FLOW_MAP
    pooled: bool = False
    edge_floor: float | None = None
    card: Card | None = None

    def __attrs_post_init__(self) -> None:
        if self.unit not in ("steps", "NFE"):
            raise ScoresError(f"a table's unit is 'steps' or 'NFE', got {self.unit!r}")
        for row in self.rows:
            if len(row.values) != len(self.counts):
                raise ScoresError(f"row {row.name!r} has {len(row.values)} values for {len(self.counts)} columns")

    def value(self, row: str, count: int) -> float:
        """The score of the row named `row` at step count (or NFE) `count`."""
        for candidate in self.rows:
            if candidate.name == row:
                return candidate.values[self.counts.index(count)]
        raise KeyError(f"no row {row!r}; the table has {', '.join(r.name for r in self.rows)}")

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "metric": self.metric,
            "unit": self.unit,
            "counts": list(self.counts),
            "sampler": self.sampler,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "noise_floor": self.noise_floor,
            "rows": [row.to_json() for row in self.rows],
        }
        if self.kind != FLOW_MAP:
            out |= {"pooled": self.pooled, "edge_floor": self.edge_floor}
        if self.card is not None:
            out["card"] = self.card.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Table":
        return cls(
            kind=data.get("kind", FLOW_MAP),
            metric=data["metric"],
            unit=data.get("unit", "steps"),
            counts=data["counts"],
            rows=[Row.from_json(row) for row in data["rows"]],
            noise_floor=data["noise_floor"],
            num_samples=data["num_samples"],
            seed=data["seed"],
            sampler=data.get("sampler", FLOW_MAP),
            pooled=data.get("pooled", False),
            edge_floor=data.get("edge_floor"),
            card=Card.from_json(data["card"]) if "card" in data else None,
        )


@attrs.frozen(kw_only=True)
class Budget:
    """What a run's training cost: `steps` of the `planned` ones (`train.steps`), of
    `batch_size` each, in `seconds`, `skipped` of them skipped (non-finite gradients)."""

    steps: int
    planned: int
    seconds: float
    batch_size: int
    skipped: int = 0

    @property
    def finished(self) -> bool:
        return self.steps >= self.planned

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class Scores:
    """Everything a run was scored on: its evaluation tables, its training seed and budget, and
    the flat scores tools added (`tool`)."""

    tables: tuple[Table, ...] = attrs.field(default=(), converter=tuple)
    seed: int | None = None
    budget: Budget | None = None
    tool: dict[str, float] = attrs.field(factory=dict)

    def table(self, kind: str = FLOW_MAP) -> Table | None:
        """The first table of `kind` (None if the run has none)."""
        return next((table for table in self.tables if table.kind == kind), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seed": self.seed,
            "budget": None if self.budget is None else self.budget.to_json(),
            "tables": [table.to_json() for table in self.tables],
            "tool": self.tool,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Scores":
        if data.get("format") != FORMAT:
            raise ScoresError(
                f"scores of format {data.get('format')!r}, this flowmap reads format {FORMAT}; a flat "
                "{'name': number} file predates it: convert the run with tools/convert_scores.py"
            )
        budget = data.get("budget")
        return cls(
            tables=[Table.from_json(table) for table in data.get("tables", [])],
            seed=data.get("seed"),
            budget=None if budget is None else Budget(**budget),
            tool={str(k): float(v) for k, v in data.get("tool", {}).items()},
        )

    @classmethod
    def loads(cls, text: str) -> "Scores":
        return cls.from_json(json.loads(text))
