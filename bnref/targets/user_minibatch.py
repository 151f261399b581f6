"""A user's mini-batch function of the course's form, named as `module:function`, as a target.

The function is ``random_mini_batches(X, Y, mini_batch_size=64, seed=0)`` with X of shape
(n_x, m) and Y of shape (1, m), returning the list of pairs ``(mini_batch_X, mini_batch_Y)``:
X batches of shape (n_x, k) and Y batches of shape (1, k), the same k in a pair. A result of
another form (None, an array, a pair that is not a pair, a list where an array is expected, an
array of the wrong shape) is refused with a TypeError or ValueError naming the function, what
it returned and the form expected, as `bnref.targets.user_target` refuses a batch-norm
function's. The batches come back as they were returned (views stay views), so
`properties.minibatch_props.check_pure` can still tell a batch that shares memory with X or Y.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bnref.targets.user_target import describe_value, resolve_function
from properties.minibatch_props import MiniBatchTarget

MINIBATCH_FORM = "a list of pairs (mini_batch_X, mini_batch_Y)"


def _as_batch(value: object, shape: tuple[int | None, ...], what: str, expected: str) -> ArrayLike:
    """`value` as an array of `shape` (None: any length there) of real numbers, itself if it is
    a NumPy array already; TypeError (not an array, or not of real numbers) or ValueError
    (another shape) saying `what` returned and the form `expected`."""
    if not hasattr(value, "__array__") or isinstance(value, np.generic):
        raise TypeError(f"{what} {describe_value(value)}; expected {expected}")
    arr = np.asarray(value)  # `value` itself for a NumPy array: a view of X stays one
    if arr.dtype.kind not in "fiub":  # complex, object, strings: not the values it was given
        raise TypeError(f"{what} {describe_value(arr)}; expected {expected} of real numbers")
    if arr.ndim != len(shape) or any(
        n is not None and n != d for n, d in zip(shape, arr.shape, strict=True)
    ):
        raise ValueError(f"{what} {describe_value(arr)}; expected {expected}")
    return arr


def checked_minibatch_function(
    function: Callable[..., Any], label: str
) -> Callable[[Any, Any, int, int], list[tuple[ArrayLike, ArrayLike]]]:
    """`function` of the course's form, its result checked: a list (a tuple, a generator) of
    pairs, X batches of shape (n_x, k) and Y batches of shape (1, k), the same k in a pair.
    `label` names the function in the messages ("mod:fn")."""

    def call(X: Any, Y: Any, size: int, seed: int) -> list[tuple[ArrayLike, ArrayLike]]:
        out = function(X, Y, size, seed)
        returned = f"mini-batch function {label} returned"
        n_x = np.shape(X)[0]
        form = f"{MINIBATCH_FORM}, X of shape ({n_x}, k) and Y of shape (1, k)"
        if not isinstance(out, list | tuple | Iterator):  # a generator is iterated as a list
            raise TypeError(f"{returned} {describe_value(out)}; expected {form}")
        batches = []
        for i, pair in enumerate(out):
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise TypeError(
                    f"{returned} batch {i} as {describe_value(pair)}; expected a pair "
                    "(mini_batch_X, mini_batch_Y)"
                )
            bx = _as_batch(
                pair[0],
                (n_x, None),
                f"{returned} mini_batch_X of batch {i} as",
                f"an array of shape ({n_x}, k)",
            )
            k = np.shape(bx)[1]
            by = _as_batch(
                pair[1],
                (1, k),
                f"{returned} mini_batch_Y of batch {i} as",
                f"an array of shape (1, {k}), as many examples as its mini_batch_X",
            )
            batches.append((bx, by))
        return batches

    return call


def load_user_minibatch_target(spec: str) -> MiniBatchTarget:
    """The mini-batch function `spec` ("module:function") as a course-form `MiniBatchTarget`
    named "user module:function", its results checked (`checked_minibatch_function`);
    ValueError or TypeError (`resolve_function`) if it cannot be loaded."""
    function = resolve_function(spec, "TARGET")
    return MiniBatchTarget(checked_minibatch_function(function, spec), f"user {spec}")
