"""Families of interchangeable components, and the one decorator that registers them.

Every design axis of the paper (interpolant, parameterisation, objective, time sampler,
stop-gradient policy, weighting, backbone, dataset, metric, ...) is a *family*. A family
is declared once, beside its contract in `flowmap_core/protocols.py`; a component joins
it with ::

    @register("objective", "lsd")
    @attrs.define(frozen=True, kw_only=True)
    class LSD: ...

which records the class under (family, name) and registers it with gin as
`family.name`, so a gin file selects it with `@objective.lsd()` (or `@lsd()` when the
short name is unambiguous). Direct Python calls of the class are left untouched.
"""

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import gin

from flowmap_core.errors import FlowmapError


class RegistryError(FlowmapError, KeyError):
    """An unknown family or component name, or a name registered twice."""

    def __str__(self) -> str:
        return str(self.args[0])


@attrs.define
class Family:
    """A named set of interchangeable components sharing one contract.

    `contract` lists the attributes every member must have (from the family's Protocol);
    registration fails early, naming what is missing, if a class lacks one.
    """

    name: str
    doc: str
    contract: tuple[str, ...] = ()
    members: dict[str, type] = attrs.field(factory=dict)


_FAMILIES: dict[str, Family] = {}


def declare_family(name: str, doc: str, contract: tuple[str, ...] = ()) -> Family:
    """Declare a family. Declaring the same name again returns the existing family."""
    if name in _FAMILIES:
        return _FAMILIES[name]
    family = Family(name=name, doc=doc, contract=contract)
    _FAMILIES[name] = family
    return family


def family(name: str) -> Family:
    """The family called `name`; unknown names fail with the list of known families."""
    try:
        return _FAMILIES[name]
    except KeyError:
        known = ", ".join(sorted(_FAMILIES))
        raise RegistryError(f"unknown component family {name!r}; known families: {known}") from None


def families() -> list[Family]:
    """All declared families, in declaration order."""
    return list(_FAMILIES.values())


def register(family_name: str, name: str) -> Callable[[type], type]:
    """Class decorator: record `cls` as component `name` of `family_name`, and with gin.

    Raises `RegistryError` if the name is taken in that family, and `TypeError` if the
    class lacks an attribute of the family's contract.
    """
    fam = family(family_name)

    def decorate(cls: type) -> type:
        if name in fam.members:
            other = fam.members[name]
            raise RegistryError(
                f"component name {name!r} is already registered in family {fam.name!r} "
                f"by {other.__module__}.{other.__qualname__}; pick another name"
            )
        missing = [attr for attr in fam.contract if not _has_attribute(cls, attr)]
        if missing:
            raise TypeError(
                f"{cls.__qualname__} cannot join family {fam.name!r}: it lacks "
                f"{', '.join(missing)} (the family's contract: {', '.join(fam.contract)})"
            )
        gin.register(name, module=fam.name)(cls)
        fam.members[name] = cls
        cls.registry_name = name
        cls.registry_family = fam.name
        return cls

    return decorate


def get(family_name: str, name: str) -> type:
    """The class registered as `name` in `family_name`; unknown names list the known ones."""
    fam = family(family_name)
    try:
        return fam.members[name]
    except KeyError:
        raise RegistryError(
            f"unknown {fam.name} {name!r}; known {fam.name} names: {', '.join(names(fam.name))}"
        ) from None


def names(family_name: str) -> list[str]:
    """Sorted names of the components registered in `family_name`."""
    return sorted(family(family_name).members)


def build(family_name: str, name: str, **kwargs: Any) -> Any:
    """Instantiate component `name` of `family_name` with keyword arguments."""
    return get(family_name, name)(**kwargs)


def _has_attribute(cls: type, attr: str) -> bool:
    """Whether instances of `cls` have `attr`: defined in its MRO (not its metaclass's)."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        if attr in vars(klass) or attr in getattr(klass, "__annotations__", {}):
            return True
    return attrs.has(cls) and attr in attrs.fields_dict(cls)


def parts(component: Any) -> Iterator[Any]:
    """`component` and every component nested in its attrs fields (tuples and lists too), depth first."""
    yield component
    if attrs.has(type(component)):
        for field in attrs.fields(type(component)):
            yield from parts(getattr(component, field.name))
    elif isinstance(component, tuple | list):
        for item in component:
            yield from parts(item)


def first_doc_line(obj: object) -> str:
    """The first line of an object's docstring, or '' if it has none."""
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def describe() -> str:
    """A listing of every family with its components and their one-line docs."""
    lines = []
    for fam in families():
        lines.append(f"{fam.name}: {fam.doc}")
        if not fam.members:
            lines.append("    (none registered)")
        width = max((len(n) for n in fam.members), default=0)
        for member_name in names(fam.name):
            doc = first_doc_line(fam.members[member_name])
            lines.append(f"    {member_name.ljust(width)}  {doc}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# The standard families are declared beside their contracts; importing them here (after
# `declare_family` exists) makes `register` work whichever module is imported first.
from flowmap_core import protocols as _protocols  # noqa: E402, F401
