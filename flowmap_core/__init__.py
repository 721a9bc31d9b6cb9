"""flowmap's generic machinery: registry, contracts, trainer, sampling, property tests.

It knows no method, dataset or network; those are components (the `components` package).
"""

__version__ = "0.1.0"
