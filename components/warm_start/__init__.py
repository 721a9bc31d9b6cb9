"""Where the student's weights start (family `warm_start`)."""

from flowmap_components.warm_start import run  # noqa: F401
