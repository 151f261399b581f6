"""bnref: a typed NumPy reference implementation of batch normalization, for use as an oracle.

``import bnref`` gives the reference's public API (`bnref.batch_norm_forward`, ...), the plain
float64 formulas of the `reference` package. The rest lives in submodules, imported on demand:
`bnref.cli` (the `bnref` command), `bnref.targets` (the implementations `bnref check` audits),
`bnref.fast` (a faster batch norm, audited against the reference) and `bnref.experiments`.
"""

from reference import *  # noqa: F403 -- the public API is the reference's, name for name
from reference import __all__ as __all__
