"""No out-of-contract number is accepted: every numeric argument declares its range, and
values outside it are refused with a message naming the argument.

The configurables are all of flowmap's gin configurables (every registered component,
`train`, `evaluate`, `rollback`, gin functions), so a new one is checked with no new
test. A numeric argument is one annotated int or float (or either with None, or a float
that may be a tensor). Its range (`flowmap_core.validators.Range`) is its attrs validator's,
or, for a class that is not attrs or a function, its entry in `declared_ranges`.
Values outside each range are tried on the validators directly (fast, every argument),
and through the command on the smoke run: a bounded draw over the arguments of the
components it builds, and the values that trained silently before the ranges.
"""

import functools
import inspect
import math
import tempfile
import types
import typing
from pathlib import Path

import attrs
import gin
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmap_core import cli, config, registry
from flowmap_core.errors import FlowmapError
from flowmap_core.validators import Range, declared_range

SMOKE = "smoke/checkerboard_lsd.gin"
QUICK = ["train.steps = 2", "train.batch_size = 32"]
PASSED_BY_THE_CALLER = {"params": [torch.zeros(1, requires_grad=True)], "data_shape": (2,)}
"""Arguments the trainer passes itself to a class that is not attrs (an optimiser's
parameters, a backbone's data shape): filled in to call it."""
SET_BY_THE_TRAINER = {"heads"}
"""Numeric arguments the trainer passes itself (the parameterisation's heads): a binding of
them is not read."""


@attrs.frozen
class Argument:
    """A numeric argument of a configurable: `shown.name` in gin (the configurable's gin
    selector is `selector`), its annotation, its default (attrs.NOTHING if it has none) and its
    declared range."""

    selector: str
    shown: str
    name: str
    target: typing.Any
    annotation: typing.Any
    default: typing.Any
    declared: Range | None

    def __str__(self) -> str:
        return f"{self.shown}.{self.name}"


def _kinds(annotation: typing.Any) -> set:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set(typing.get_args(annotation))
    return {annotation}


def numeric(annotation: typing.Any) -> bool:
    """int or float, alone or with None (optional) or a tensor (torch's lr)."""
    kinds = _kinds(annotation)
    return bool(kinds & {int, float}) and kinds <= {int, float, type(None), torch.Tensor}


def _configurables() -> list[tuple[str, str, typing.Any]]:
    """(gin selector, name in a binding, wrapped class or function) of flowmap's configurables."""
    config.import_components()
    families = {family.name for family in registry.families()}
    found = []
    for selector, configurable in gin.config._REGISTRY.items():  # gin has no public list of configurables
        target = configurable.wrapped
        if not getattr(target, "__module__", "").startswith(("flowmap_core", "flowmap_components")):
            continue
        module = configurable.module or ""
        found.append((selector, f"{module}.{configurable.name}" if module in families else configurable.name, target))
    return sorted(found, key=lambda found: found[1])


def arguments() -> list[Argument]:
    """Every numeric argument a gin binding can set, of every flowmap configurable."""
    found = []
    for selector, shown, target in _configurables():
        if attrs.has(target):
            for field in attrs.fields(target):
                if field.init and numeric(field.type):
                    name, declared = field.alias or field.name, declared_range(field.validator)
                    found.append(Argument(selector, shown, name, target, field.type, field.default, declared))
            continue
        ranges = getattr(target, "declared_ranges", {})
        for parameter in inspect.signature(target).parameters.values():
            if parameter.name not in PASSED_BY_THE_CALLER and numeric(parameter.annotation):
                default = attrs.NOTHING if parameter.default is inspect.Parameter.empty else parameter.default
                declared = ranges.get(parameter.name)
                found.append(Argument(selector, shown, parameter.name, target, parameter.annotation, default, declared))
    return found


ARGUMENTS = arguments()
DECLARED = [argument for argument in ARGUMENTS if argument.declared is not None]


def test_every_numeric_argument_declares_its_range():
    missing = [str(argument) for argument in ARGUMENTS if argument.declared is None]
    assert not missing, f"numeric arguments without a declared range (flowmap_core.validators): {', '.join(missing)}"
    assert len(ARGUMENTS) > 100  # the walk found the configurables


@pytest.mark.parametrize("argument", DECLARED, ids=str)
def test_the_range_fits_the_annotation_and_the_default(argument):
    """An int argument takes integers, an optional one None, and its default is in range."""
    kinds, declared = _kinds(argument.annotation), argument.declared
    assert declared.integer == (float not in kinds), f"{argument}: {argument.annotation} but {declared}"
    assert declared.optional == (type(None) in kinds), f"{argument}: {argument.annotation} but {declared}"
    if argument.default not in (attrs.NOTHING, gin.REQUIRED):
        declared.check(str(argument), argument.default)


def outside(declared: Range) -> list:
    """Values just outside `declared`, at each end and of the wrong kind."""
    values: list = [math.nan, "wrong", True]
    for end, step, is_open in ((declared.low, -1, declared.low_open), (declared.high, 1, declared.high_open)):
        if math.isinf(end):
            if is_open:
                values.append(end)
            continue
        values.append(end + step)
        if is_open:
            values.append(end)
        elif not declared.integer:
            values.append(math.nextafter(end, step * math.inf))  # the first float past a closed end
        if declared.integer:
            values += [float(end), end + 0.5 * step]  # floats, even whole ones, are not integers
    if declared.integer:
        values += [1e300, 0.5]
    if not declared.optional:
        values.append(None)
    return values


def outside_strategy(declared: Range) -> st.SearchStrategy:
    """Any value outside `declared`: beyond an end, NaN, infinite where the range is finite,
    a float where it takes integers, None where it is not optional."""
    parts = [st.sampled_from(outside(declared))]
    if declared.low > -math.inf:
        parts.append(st.floats(max_value=declared.low, exclude_max=not declared.low_open))
        if declared.integer:
            parts.append(st.integers(max_value=int(declared.low) - (0 if declared.low_open else 1)))
    if declared.high < math.inf:
        parts.append(st.floats(min_value=declared.high, exclude_min=not declared.high_open))
        if declared.integer:
            parts.append(st.integers(min_value=int(declared.high) + (0 if declared.high_open else 1)))
    if declared.integer:
        parts.append(st.floats())
    return st.one_of(parts)


def refuse(argument: Argument, value: typing.Any) -> None:
    """`value` for `argument` is refused with a ValueError or TypeError (or flowmap's own error)
    that names `shown.name`: the attrs validator, or the call of a class or function."""
    target = argument.target
    with pytest.raises((ValueError, TypeError, FlowmapError)) as raised:
        if attrs.has(target):
            field = next(f for f in attrs.fields(target) if (f.alias or f.name) == argument.name)
            field.validator(object.__new__(target), field, value)
        else:
            wanted = inspect.signature(target).parameters
            target(**{k: v for k, v in PASSED_BY_THE_CALLER.items() if k in wanted}, **{argument.name: value})
    assert str(argument) in str(raised.value), f"{argument} = {value!r}: {raised.value}"


@pytest.mark.parametrize("argument", DECLARED, ids=str)
def test_values_just_outside_the_range_are_refused(argument):
    for value in outside(argument.declared):
        refuse(argument, value)


@settings(max_examples=400, deadline=None)
@given(argument=st.sampled_from(DECLARED), data=st.data())
def test_any_value_outside_the_range_is_refused(argument, data):
    refuse(argument, data.draw(outside_strategy(argument.declared), label=str(argument)))


# ------------------------------------------------------------------ through the command


def _references(value: typing.Any) -> typing.Iterator[str]:
    """The selectors of the configurables a bound value refers to (`@family.name()` or without parentheses)."""
    reference = getattr(value, "_configurable", None)  # gin's ConfigurableReference
    if reference is not None:
        yield reference.selector
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _references(item)


@functools.cache
def smoke_arguments() -> list[Argument]:
    """The declared arguments of the configurables the smoke run builds: `train`, `evaluate`,
    and every configurable their bindings refer to, and theirs, ..."""
    config.parse([SMOKE], QUICK)
    built, todo = set(), ["flowmap_core.spec.train", "flowmap_core.evaluation.evaluate"]
    while todo:
        selector = todo.pop()
        if selector not in built:
            built.add(selector)
            for value in gin.config._CONFIG.get(("", selector), {}).values():
                todo += _references(value)
    gin.clear_config()
    return [a for a in DECLARED if a.selector in built and a.name not in SET_BY_THE_TRAINER]


def gin_literal(value: typing.Any) -> str:
    """`value` as gin writes it (inf as 1e999)."""
    if isinstance(value, float) and math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return repr(value)


def refused_by_the_command(capsys, tmp_path, binding: str) -> str:
    """The one line `flowmap train` prints for the smoke run with `binding`, which it must refuse."""
    run_dir = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"  # a fresh one for each Hypothesis example
    argv = ["train", SMOKE, "--no-progress", "--run-dir", str(run_dir)]
    assert cli.main([*argv, *(a for b in [*QUICK, binding] for a in ("--gin", b))]) == 2, binding
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("flowmap: training")]
    assert len(lines) == 1 and lines[0].startswith("flowmap: error: "), err
    assert not (run_dir / "checkpoints").exists()
    return lines[0]


def test_the_smoke_run_builds_the_components_the_command_fuzz_draws():
    shown = {argument.shown for argument in smoke_arguments()}
    assert {"train", "evaluate", "optimizer.adam", "backbone.mlp", "time_sampler.beta_gap"} <= shown, shown


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_command_refuses_values_outside_the_range_in_one_line(data, capsys, tmp_path):
    argument = data.draw(st.sampled_from(smoke_arguments()), label="argument")
    value = data.draw(outside_strategy(argument.declared).filter(lambda v: v == v), label="value")  # gin has no NaN
    line = refused_by_the_command(capsys, tmp_path, f"{argument} = {gin_literal(value)}")
    assert str(argument) in line, line


SILENT_BEFORE = [
    ("time_sampler.shift.factor = 1e999", "time_sampler.shift.factor"),
    ("optimizer.adam.eps = 0", "optimizer.adam.eps"),
    ("time_sampler.beta_gap.anneal_steps = 1e300", "time_sampler.beta_gap.anneal_steps"),
    ("lr_schedule.cosine.final_fraction = 3.0", "lr_schedule.cosine.final_fraction"),
    ("evaluate.num_samples = 0", "evaluate.num_samples"),
    ("metric.histogram_kl.floor = 2.0", "metric.histogram_kl.floor"),
]
"""Values `flowmap train` ran the smoke run with, to exit 0, before the ranges were declared."""


@pytest.mark.parametrize(("binding", "named"), SILENT_BEFORE)
def test_values_that_trained_silently_are_refused_in_one_line(binding, named, capsys, tmp_path):
    assert named in refused_by_the_command(capsys, tmp_path, binding)
