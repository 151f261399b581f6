"""Every property bnref knows, in the order `bnref check` reports them."""

from __future__ import annotations

from dataclasses import replace

from properties import (
    accuracy_props,
    batchnorm_props,
    gradient_props,
    minibatch_props,
    running_stats_props,
)
from properties.framework import Property

# Why the gradient properties are float64-only: their bounds G1-G3 are written with u = 2**-53,
# and a central difference of a float32 forward resolves a derivative to u**(2/3) ~ 4e-6 at
# best (1e-2 in float16), less under the forward's n u kappa rounding. The backward of a
# narrower dtype is checked instead by backward-accuracy against 50-digit values (B1-B4 with
# that dtype's u).
_FINITE_DIFFERENCES = (
    "central differences of a low-precision forward cannot resolve the gradient to a derived "
    "bound (the bounds G1-G3 are float64's); backward-accuracy checks this dtype's backward "
    "against 50-digit values instead"
)
_ORTHOGONALITY = (
    "its bound is the float64 backward analysis (G3, u = 2**-53); backward-accuracy checks "
    "this dtype's dx against 50-digit values instead"
)
_FLOAT64_ONLY = {
    "gradients-full": _FINITE_DIFFERENCES,
    "gradients-fast": _FINITE_DIFFERENCES,
    "dx-orthogonality": _ORTHOGONALITY,
}

# Claims about a batch-norm implementation: they run against whichever target is checked.
BATCHNORM_PROPERTIES: tuple[Property, ...] = tuple(
    replace(p, float64_only=_FLOAT64_ONLY[p.name]) if p.name in _FLOAT64_ONLY else p
    for p in (
        *batchnorm_props.PROPERTIES,
        *gradient_props.PROPERTIES,
        *running_stats_props.PROPERTIES,
        *accuracy_props.PROPERTIES,
    )
)
# Claims about a mini-batch function: they run against the reference's `random_mini_batches`
# when the reference is checked, and against a user's with `bnref check MOD:FN --minibatch`.
MINIBATCH_PROPERTIES: tuple[Property, ...] = minibatch_props.PROPERTIES
ALL_PROPERTIES: tuple[Property, ...] = BATCHNORM_PROPERTIES + MINIBATCH_PROPERTIES


def by_name(name: str) -> Property:
    """The property called `name`; ValueError listing the known names otherwise."""
    for prop in ALL_PROPERTIES:
        if prop.name == name:
            return prop
    known = ", ".join(p.name for p in ALL_PROPERTIES)
    raise ValueError(f"property must be one of {known}; got {name!r}")
