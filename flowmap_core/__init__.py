"""flowmap's generic machinery: registry, contracts, trainer, sampling, property tests.

It knows no method, dataset or network; those are components: the `flowmap_components`
package, the repository's components/ folder.
"""

__version__ = "0.1.0"
