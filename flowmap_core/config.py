"""Reading gin configs: the repository's search path, component imports, and clear errors.

Unknown configurables, unknown parameters and malformed files are errors that name the
file and line; unknown component names list the known ones of their family.
"""

import importlib
import logging
import re
import tokenize
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gin

from flowmap_core import registry
from flowmap_core.errors import FlowmapError

GIN_DIR = Path(__file__).resolve().parents[1] / "gin"
"""The repository's gin folder: `include` paths are resolved against it."""

DEFAULT_IMPORTS = ("components",)

_SEARCH_PATHS: set[str] = set()


class ConfigError(FlowmapError, ValueError):
    """A config that cannot be parsed or does not fit the registered components."""


def import_components(modules: Sequence[str] = DEFAULT_IMPORTS) -> None:
    """Import the modules whose components a config may use (registration happens on import)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise ConfigError(f"cannot import component module {module!r}: {error}") from error


def resolve_config_file(path: str | Path) -> Path:
    """A config path as given, or relative to the repository's gin folder."""
    candidates = [Path(path), GIN_DIR / path, GIN_DIR.parent / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config file {str(path)!r} not found (looked in the working directory and {GIN_DIR})")


def parse(
    config_files: Sequence[str | Path] = (),
    bindings: Sequence[str] = (),
    imports: Sequence[str] = DEFAULT_IMPORTS,
) -> None:
    """Clear gin, import component modules, then parse files and bindings strictly."""
    import_components(imports)
    gin.clear_config()
    if str(GIN_DIR) not in _SEARCH_PATHS:
        gin.add_config_file_search_path(str(GIN_DIR))
        _SEARCH_PATHS.add(str(GIN_DIR))
    # gin logs an error for every place it looks for an include before finding it
    logging.disable(logging.ERROR)
    try:
        for config_file in config_files:
            path = resolve_config_file(config_file)
            _parse_one(lambda p=path: gin.parse_config_file(str(p)), where=str(path))
        for binding in bindings:
            _parse_one(lambda b=binding: gin.parse_config(b), where=f"--gin {binding!r}")
    finally:
        logging.disable(logging.NOTSET)
    gin.finalize()


def _parse_one(parse_fn, where: str) -> None:
    try:
        parse_fn()
    except tokenize.TokenError as error:
        line = error.args[1][0] if len(error.args) > 1 else "?"
        raise ConfigError(f"{where}: malformed gin (line {line}): {error.args[0]}") from None
    except SyntaxError as error:
        location = f"{error.filename or where}, line {error.lineno}"
        raise ConfigError(f"{location}: malformed gin: {error.msg}\n    {(error.text or '').strip()}") from None
    except (ValueError, KeyError, TypeError, ImportError) as error:
        raise ConfigError(explain(str(error), where)) from None


_UNKNOWN = re.compile(r"No configurable matching (?:reference )?'@?([\w.]+?)(?:\(\))?'")


def explain(message: str, where: str) -> str:
    """Gin's message, with the known names of the family when a component name is unknown."""
    text = message if where in message or "In file" in message else f"{where}: {message}"
    match = _UNKNOWN.search(message)
    if match:
        name = match.group(1)
        family_name = name.split(".")[0] if "." in name else None
        known = [f.name for f in registry.families()]
        if family_name in known:
            text += f"\nknown {family_name} names: {', '.join(registry.names(family_name))}"
        else:
            text += "\ncomponents are referenced as @family.name; families: " + ", ".join(known)
    return text


@contextmanager
def isolated() -> Iterator[None]:
    """Parse and build another config inside, leaving the current gin state as it was.

    For components that open another run (a pretrained teacher): gin's state is
    global, so its bindings, imports and operative record are saved and restored.
    """
    state = gin.config
    saved = (
        {key: dict(value) for key, value in state._CONFIG.items()},
        set(state._IMPORTS),
        dict(state._OPERATIVE_CONFIG),
        dict(state._SINGLETONS),
        state._CONFIG_IS_LOCKED,
    )
    try:
        yield
    finally:
        config, imports, operative, singletons, locked = saved
        state._CONFIG.clear()
        state._CONFIG.update(config)
        state._IMPORTS.clear()
        state._IMPORTS.update(imports)
        state._OPERATIVE_CONFIG.clear()
        state._OPERATIVE_CONFIG.update(operative)
        state._SINGLETONS.clear()
        state._SINGLETONS.update(singletons)
        state._set_config_is_locked(locked)
