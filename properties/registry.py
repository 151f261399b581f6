"""Every property bnref knows, in the order `bnref check` reports them."""

from __future__ import annotations

from properties import (
    accuracy_props,
    batchnorm_props,
    gradient_props,
    layer_props,
    minibatch_props,
    optimizer_props,
    running_stats_props,
)
from properties.framework import Property

# Claims about a batch-norm implementation: they run against whichever target is checked.
BATCHNORM_PROPERTIES: tuple[Property, ...] = (
    *batchnorm_props.PROPERTIES,
    *gradient_props.PROPERTIES,
    *running_stats_props.PROPERTIES,
    *accuracy_props.PROPERTIES,
)
# Claims about the reference's own machinery (mini-batches, optimizers, layers): they ignore
# the target, so `bnref check` runs them only on the reference, never in another's name.
REFERENCE_PROPERTIES: tuple[Property, ...] = (
    *minibatch_props.PROPERTIES,
    *optimizer_props.PROPERTIES,
    *layer_props.PROPERTIES,
)
ALL_PROPERTIES: tuple[Property, ...] = BATCHNORM_PROPERTIES + REFERENCE_PROPERTIES


def by_name(name: str) -> Property:
    """The property called `name`; ValueError listing the known names otherwise."""
    for prop in ALL_PROPERTIES:
        if prop.name == name:
            return prop
    known = ", ".join(p.name for p in ALL_PROPERTIES)
    raise ValueError(f"property must be one of {known}; got {name!r}")
