"""The base of the errors flowmap raises about its input (configs, runs, checkpoints).

The `flowmap` command prints these as one line; anything else is a bug and keeps its
traceback (set FLOWMAP_TRACEBACK=1 to see tracebacks of these too).
"""


class FlowmapError(Exception):
    """An error in what the user gave flowmap, with a message that says what to change."""


class TrainingError(FlowmapError, RuntimeError):
    """The run cannot go on (bad configuration, a run directory that does not match, ...)."""
