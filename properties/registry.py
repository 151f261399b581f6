"""Every property bnref knows, in the order `bnref check` reports them."""

from __future__ import annotations

from properties import (
    accuracy_props,
    batchnorm_props,
    gradient_props,
    minibatch_props,
    running_stats_props,
)
from properties.framework import Property

ALL_PROPERTIES: tuple[Property, ...] = (
    *batchnorm_props.PROPERTIES,
    *gradient_props.PROPERTIES,
    *running_stats_props.PROPERTIES,
    *accuracy_props.PROPERTIES,
    *minibatch_props.PROPERTIES,
)


def by_name(name: str) -> Property:
    """The property called `name`; ValueError listing the known names otherwise."""
    for prop in ALL_PROPERTIES:
        if prop.name == name:
            return prop
    known = ", ".join(p.name for p in ALL_PROPERTIES)
    raise ValueError(f"property must be one of {known}; got {name!r}")
