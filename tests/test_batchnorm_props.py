"""The forward-pass properties hold for the reference."""

import pytest

from properties.adapter import ReferenceImplementation
from properties.batchnorm_props import PROPERTIES
from properties.framework import Property


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_reference_satisfies(prop: Property) -> None:
    prop.as_test(ReferenceImplementation())()
