"""Reading gin configs: where they are found, component imports, and clear errors.

Unknown configurables, unknown parameters and malformed files are errors that name the
file and line; unknown component names list the known ones of their family.
"""

import difflib
import importlib
import logging
import re
import sys
import tokenize
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs
import gin

from flowmap_core import registry
from flowmap_core.errors import FlowmapError


def _gin_dir() -> Path:
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "gin"


GIN_DIR = _gin_dir()
"""The gin configs: `flowmap_core/configs` in an installed package (a wheel ships the
repository's gin/ folder there), else the repository's gin/ beside the package. `include`
paths and config names (`experiments/checkerboard_lsd.gin`) are resolved against it."""

DEFAULT_IMPORTS = ("flowmap_components",)

RENAMED = {"components": "flowmap_components"}
"""Earlier import names of component packages: a run directory written before components/
installed as `flowmap_components` has `import components` in its config.gin."""

_SEARCH_PATHS: set[str] = set()


class ConfigError(FlowmapError, ValueError):
    """A config that cannot be parsed or does not fit the registered components."""


def import_components(modules: Sequence[str] = DEFAULT_IMPORTS) -> None:
    """Import the modules whose components a config may use (registration happens on import);
    an earlier name in a config (`RENAMED`) refers to the package under its current name."""
    for module in modules:
        try:
            importlib.import_module(RENAMED.get(module, module))
        except ModuleNotFoundError as error:
            raise ConfigError(f"cannot import component module {module!r}: {error}") from error
    for old, new in RENAMED.items():
        if new in sys.modules:
            sys.modules.setdefault(old, sys.modules[new])


def resolve_config_file(path: str | Path) -> Path:
    """A config path as given, or relative to the gin configs (`gin/experiments/...` names the
    same file as `experiments/...`, in a checkout or an installed package)."""
    parts = Path(path).parts
    candidates = [Path(path), GIN_DIR / path]
    if len(parts) > 1 and parts[0] == "gin":
        candidates.append(GIN_DIR.joinpath(*parts[1:]))
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
            _check_includes(path)
            _parse_one(lambda p=path: gin.parse_config_file(str(p)), where=str(path))
        for binding in bindings:
            _parse_one(lambda b=binding: gin.parse_config(b), where=f"--gin {binding!r}")
    finally:
        logging.disable(logging.NOTSET)
    gin.finalize()


_INCLUDE = re.compile(r"""^\s*include\s+(['"])(.+?)\1""", re.M)


def _check_includes(path: Path, chain: tuple[Path, ...] = ()) -> None:
    """A ConfigError naming the cycle if `path` includes itself, directly or through others."""
    here = path.resolve()
    if here in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(here) :], here))
        raise ConfigError(f"{path}: the config includes itself ({cycle}); remove the include that closes the cycle")
    try:
        text = path.read_text()
    except OSError:
        return
    for match in _INCLUDE.finditer(text):
        try:
            included = resolve_config_file(match.group(2))
        except ConfigError:
            continue  # gin reports the missing file with its line
        _check_includes(included, (*chain, here))


def _parse_one(parse_fn, where: str) -> None:
    try:
        parse_fn()
    except RecursionError:
        raise ConfigError(f"{where}: the config includes itself (an include cycle)") from None
    except tokenize.TokenError as error:
        line = error.args[1][0] if len(error.args) > 1 else "?"
        raise ConfigError(f"{where}: malformed gin (line {line}): {error.args[0]}") from None
    except SyntaxError as error:
        location = f"{error.filename or where}, line {error.lineno}"
        raise ConfigError(f"{location}: malformed gin: {error.msg}\n    {(error.text or '').strip()}") from None
    except (ValueError, KeyError, TypeError, ImportError) as error:
        raise ConfigError(explain(str(error), where)) from None
    except OSError as error:  # an include that names no file
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ConfigError(f"{where}: " + "; ".join(lines)) from None


_UNKNOWN = re.compile(r"No configurable matching (?:reference )?'@?([\w.]+?)(?:\(\))?'")


_IN_FILE = re.compile(
    r'\n\s*In (?:file "(?P<file>[^"]+)", line|(?P<string>bindings string) line) (?P<line>\d+)\n\s*(?P<text>[^\n]*)'
)


def explain(message: str, where: str) -> str:
    """Gin's message on one line (its "In file ..., line N" location folded in), with the
    known names of the family when a component name is unknown."""
    located = _IN_FILE.search(message)
    if located:
        message = (
            message[: located.start()].rstrip()
            + f" ({located['file'] or located['string']}, line {located['line']}: {located['text'].strip()})"
            + message[located.end() :]
        )
    in_file = located is not None and located["file"] is not None
    text = message if where in message or in_file or "In file" in message else f"{where}: {message}"
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


# ---------------------------------------------------------------- errors in configurables

_GIN_CALL = re.compile(r"^  In call to configurable '([^']+)' \((.*)\)(?: in scope '([^']*)')?$", re.M)
_GIN_NOTES = ("In call to configurable", "No values supplied by Gin", "Gin had values bound", "Caller supplied values")
CONFIGURABLE_ERRORS = (ValueError, TypeError, RuntimeError, AttributeError)
"""What a configurable raises about its arguments (its own checks, torch's, or a value of the wrong kind)."""


def without_gin_context(message: str) -> str:
    """The message without the lines gin appends ("In call to configurable ...")."""
    return "\n".join(line for line in message.splitlines() if not line.strip().startswith(_GIN_NOTES))


def configurable_error(error: BaseException) -> ConfigError | None:
    """An error gin raised from inside a configurable's call, as a ConfigError of one line
    that names the binding (`optimizer.adam.lr = -1`) and the reason; None if `error` did
    not come from a configurable's call (or is not a ValueError, TypeError or RuntimeError).

    The innermost configurable is the culprit; of its bindings, those the reason names (or
    whose value it shows) are reported, else all of them.
    """
    if isinstance(error, FlowmapError) or not isinstance(error, CONFIGURABLE_ERRORS):
        return None
    message = str(error)
    match = _GIN_CALL.search(message)
    if match is None:
        return None
    name, target, scope = match.groups()
    reason = "; ".join(line.strip() for line in without_gin_context(message).splitlines() if line.strip())
    reason = reason or type(error).__name__
    selector, shown = _configurable_names(name, target)
    if isinstance(error, TypeError) and target.startswith("<class ") and _CALL_MISMATCH.search(reason):
        for where, value in _class_references(selector):
            return ConfigError(
                f"{where} = {value!r}: a class where an instance is expected; write @{shown}() with "
                f"parentheses ({reason})"
            )
    return ConfigError(_name_bindings(shown, gin.config._CONFIG.get((scope or "", selector), {}), reason))


_CALL_MISMATCH = re.compile(r"positional argument|unexpected keyword argument|missing \d+ required")


def _class_references(selector: str) -> Iterator[tuple[str, object]]:
    """The bindings (`objective.split.off_diagonal`, value) that name configurable `selector`
    without parentheses (`@interpolant.linear`: the class, not an instance)."""

    def refers(value: object) -> bool:
        if isinstance(value, list | tuple):
            return any(refers(v) for v in value)
        if isinstance(value, dict):
            return any(refers(v) for v in value.values())
        reference = getattr(value, "_configurable", None)
        return reference is not None and not getattr(value, "_evaluate", True) and reference.selector == selector

    names = {sel: shown for sel, shown in (_selector_names(sel) for (_, sel) in gin.config._CONFIG)}
    for (_, bound), parameters in gin.config._CONFIG.items():
        for parameter, value in parameters.items():
            if refers(value):
                yield f"{names[bound]}.{parameter}", value


def _selector_names(selector: str) -> tuple[str, str]:
    configurable = gin.config._REGISTRY.get(selector)
    if configurable is None:
        return selector, selector
    families = {f.name for f in registry.families()}
    module = configurable.module or ""
    return selector, f"{module}.{configurable.name}" if module in families else configurable.name


def component_error(error: BaseException) -> ConfigError | None:
    """An error raised inside a method of a registered component while it ran (not while gin
    built it), as a ConfigError of one line naming the component and its bindings; None if
    no registered component's method is on the traceback."""
    if isinstance(error, FlowmapError) or not isinstance(error, CONFIGURABLE_ERRORS):
        return None
    culprit = None
    tb = error.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and getattr(type(owner), "registry_family", None):
            culprit = type(owner)
        tb = tb.tb_next
    if culprit is None:
        return None
    shown = f"{culprit.registry_family}.{culprit.registry_name}"
    reason = "; ".join(line.strip() for line in without_gin_context(str(error)).splitlines() if line.strip())
    bindings = gin.config._CONFIG.get(("", shown), {})
    return ConfigError(_name_bindings(shown, bindings, f"failed while running: {reason or type(error).__name__}"))


def _configurable_names(name: str, target: str) -> tuple[str, str]:
    """The gin selector of the configurable `name` wrapping `target`, and the name a user binds."""
    families = {f.name for f in registry.families()}
    for selector, configurable in gin.config._REGISTRY.items():
        if configurable.name == name and str(configurable.wrapped) == target:
            module = configurable.module or ""
            return selector, f"{module}.{name}" if module in families else name
    return name, name


def _name_bindings(shown: str, bindings: dict, reason: str) -> str:
    """`shown.param = value: reason` for the bindings the reason is about."""
    culprits = [p for p in bindings if re.search(rf"\b{re.escape(p)}\b", reason)]
    if not culprits:
        culprits = [p for p, value in bindings.items() if len(repr(value)) > 1 and repr(value) in reason]
    if not culprits:  # "'float' object is not iterable": the bindings of that kind
        culprits = [p for p, value in bindings.items() if f"'{_kind(value)}'" in reason]
    if not culprits and len(bindings) <= 3:
        culprits = list(bindings)
    if not culprits:
        return f"{shown}: {reason}"
    named = ", ".join(f"{shown}.{p} = {bindings[p]!r}" for p in culprits)
    return f"{named}: {reason}"


def _kind(value: object) -> str:
    """The type name an error shows for a bound value (`@name` without parentheses is a 'type')."""
    if getattr(value, "_configurable", None) is not None:
        return "type" if not getattr(value, "_evaluate", True) else "?"
    return type(value).__name__


def error_line(error: BaseException) -> str | None:
    """The one line the `flowmap` command prints for `error`, or None if it is a bug (its
    traceback is shown): flowmap's own errors, and errors of configurables while gin built
    them or while they ran. (Flowmap's own errors keep any hint lines, e.g. the known names.)"""
    if isinstance(error, FlowmapError):
        return without_gin_context(str(error))
    found = configurable_error(error) or component_error(error)
    return None if found is None else str(found)


def config_changes(before: str, after: str) -> list[str]:
    """Binding lines that differ between two gin configs (comments and blank lines ignored)."""

    def lines(text: str) -> list[str]:
        return [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    return [
        ln
        for ln in difflib.unified_diff(lines(before), lines(after), "started with", "now", lineterm="", n=0)
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]


def derivative_bindings(strategy: str) -> list[str]:
    """Bindings that give every registered objective with a `derivative` field the derivative
    strategy `strategy` (a name of the family `derivative`, e.g. 'tangent_pass')."""
    import_components()
    return [
        f"objective.{name}.derivative = @derivative.{strategy}()"
        for name, cls in registry.family("objective").members.items()
        if attrs.has(cls) and "derivative" in attrs.fields_dict(cls)
    ]


EVALUATION_FAMILIES = ("metric", "features", "sampler")
"""Families only evaluation builds: their bindings are used only by a run that is scored."""


def unused_bindings(texts: Sequence[str], *, evaluated: bool) -> list[str]:
    """The bindings written in `texts` (a config file's own lines, --gin bindings) that no
    configurable the run built has read (gin's operative config), as `scope/name.param`;
    without `evaluated`, evaluation's bindings (`evaluate`, families `EVALUATION_FAMILIES`)
    are not counted. Macros and bindings gin cannot resolve are left out."""
    from gin import config_parser

    operative = gin.config._OPERATIVE_CONFIG  # gin has no public view of what was used
    unused = []
    for text in texts:
        parser = config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True))
        for statement in parser:
            if not isinstance(statement, config_parser.BindingStatement) or not statement.arg_name:
                continue
            configurable = gin.config._REGISTRY.get_match(statement.selector)
            if configurable is None:
                continue
            name = configurable.selector
            if not evaluated and (name.endswith(".evaluate") or name.split(".")[0] in EVALUATION_FAMILIES):
                continue
            if statement.arg_name not in operative.get((statement.scope, name), {}):
                scope = f"{statement.scope}/" if statement.scope else ""
                unused.append(f"{scope}{statement.selector}.{statement.arg_name}")
    return unused
