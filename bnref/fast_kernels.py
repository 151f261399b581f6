"""Compiled block kernels of the fast engine (`bnref.fast`): one loop per pass over a block.

`bnref.fast` views x as (N, C, L), cuts it into boxes of values and runs each pass's block
function on a few threads. With numba installed (``bnref[fast]``) a block function calls the
kernel of its pass here; without it, it evaluates the same formulas as a chain of NumPy ufuncs,
each a pass over the block. A kernel reads each value once and takes it through every step of
its formula, in the same order of operations as the NumPy chain.

A kernel takes whole C-contiguous (N, C, L) arrays (x, dy, the outputs), per-channel vectors of
length C, and its box as the ints (n0, n1, c0, c1, l0, l1): the values [n0, n1) x [c0, c1) x
[l0, l1). x and dy may be float32, read as they are; every step computes in float64. For each
channel c of the box (at index c - c0 of a result):

* `channel_sums`: sum(x);
* `shifted_sums`: with t = x - shift[c], the rows sum(t) and sum(t * t);
  `shifted_sums_with` adds the rows sum(o) and sum(o * t) of another array o (dy);
* `normalize`: x_hat = (x - mean[c]) * inv_std[c] and y = gamma[c] * x_hat + beta[c], written
  to the box of x_hat and of y;
* `gradient`: dx = (dy * dy_factor[c] - (x - mean[c]) * deviation_factor[c]) - shift[c],
  written to the box of dx.

The sums add in an order of their own (the tests' bounds hold for any order of a sum). One
running sum is a chain of additions that the compiler could vectorize only by reassociating
it, which ``fastmath=False`` forbids; many independent running sums it vectorizes as written.
So where a box holds whole rows of L >= `ROW_MIN` values, or part of one row, each row is
added up in `LANES` running sums, value i in lane i % LANES, and the lanes are then added in
order. Where the rows are shorter, each column (c and l fixed) has a running sum down the rows
n of the box, and the L columns of a channel are added at the end.

Kernels raise no floating-point exceptions, and NumPy's error state does not reach them.
Overflow and invalid steps show in the sums as infinities or NaN, which the caller checks;
`normalize` and `gradient` return whether every value they wrote is finite, and the caller
redoes a box that is not with NumPy, under its ``np.errstate``, to the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

Array = NDArray[Any]  # float64, or float32 for x and dy: numba compiles a kernel per dtype
Bounds = tuple[int, int, int, int, int, int]  # a box: n0, n1, c0, c1, l0, l1
F = TypeVar("F", bound=Callable[..., object])

ROW_MIN = 64  # rows of at least this many values are summed one by one, in lanes
LANES = 64  # running sums per row; with 16, LLVM 22 (numba 0.68) unrolled them to scalar code
COLUMNS = 512  # columns per sweep down the rows of a box: their running sums stay in L1 cache


def _compiled(fn: F) -> F:
    """fn compiled by numba. Serial: the threads of `bnref.fast` run kernels side by side,
    without the GIL (numba's own thread layers abort on concurrent calls and in forked
    children). IEEE arithmetic: no reassociation or fused multiply-add. Cached on disk, next
    to this module or in numba's user cache directory, once per dtype of the arguments."""
    return cast(F, njit(nogil=True, cache=True, fastmath=False)(fn))


@_compiled
def _by_rows(x3: Array, box: Bounds) -> bool:
    """Whether the box is summed row by row: long rows, or part of one row (then the box is
    that one row, see `bnref.fast._blocks`); else it holds whole rows of fewer values."""
    length, l0, l1 = x3.shape[2], box[4], box[5]
    return bool(l1 - l0 != length or length >= ROW_MIN)


@_compiled
def _runs(a3: Array, box: Bounds) -> tuple[Array, int, int]:
    """For a box of whole rows: a3 as (N, C * L) and the columns [start, stop) of the box, so
    that the box's values of each n are the contiguous run a2[n, start:stop]."""
    n, channels, length = a3.shape
    return a3.reshape((n, channels * length)), box[2] * length, box[3] * length


@_compiled
def _per_column(vector: Array, x3: Array, box: Bounds) -> Array:
    """vector[c0:c1] with each value repeated L times: its value for each column of a run."""
    return np.repeat(vector[box[2] : box[3]], x3.shape[2])


@_compiled
def _add_columns(columns: Array, length: int, out: Array) -> None:
    """out[i] += the sum of columns[i * length : (i + 1) * length], in order, for each i."""
    for i in range(out.shape[0]):
        total = 0.0
        for j in range(i * length, (i + 1) * length):
            total += columns[j]
        out[i] += total


@_compiled
def _lane_total(lanes: Array) -> float:
    """The running sums of a row added in order."""
    total = 0.0
    for j in range(LANES):
        total += lanes[j]
    return total


@_compiled
def channel_sums(x3: Array, box: Bounds) -> Array:
    """sum(x) per channel of the box, in float64: a (c1 - c0,) array."""
    n0, n1, c0, c1, l0, l1 = box
    out = np.zeros(c1 - c0)
    if _by_rows(x3, box):
        lanes = np.empty(LANES)
        for n in range(n0, n1):
            for c in range(c0, c1):
                row = x3[n, c, l0:l1]
                full = row.shape[0] - row.shape[0] % LANES
                lanes[:] = 0.0
                for i in range(0, full, LANES):
                    for j in range(LANES):
                        lanes[j] += row[i + j]
                total = _lane_total(lanes)
                for i in range(full, row.shape[0]):
                    total += row[i]
                out[c - c0] += total
        return out
    x2, start, stop = _runs(x3, box)
    columns = np.zeros(stop - start)
    for j0 in range(0, stop - start, COLUMNS):
        cx = columns[j0 : j0 + COLUMNS]
        for n in range(n0, n1):
            run = x2[n, start + j0 : start + j0 + cx.shape[0]]
            for j in range(cx.shape[0]):
                cx[j] += run[j]
    _add_columns(columns, x3.shape[2], out)
    return out


@_compiled
def shifted_sums(x3: Array, shift: Array, box: Bounds) -> Array:
    """Per channel of the box, with t = x - shift[c]: the rows sum(t), sum(t * t) of a
    (2, c1 - c0) array."""
    n0, n1, c0, c1, l0, l1 = box
    out = np.zeros((2, c1 - c0))
    if _by_rows(x3, box):
        lanes = np.empty((2, LANES))
        for n in range(n0, n1):
            for c in range(c0, c1):
                row, m = x3[n, c, l0:l1], shift[c]
                full = row.shape[0] - row.shape[0] % LANES
                lanes[:] = 0.0
                lt, lq = lanes[0], lanes[1]
                for i in range(0, full, LANES):
                    for j in range(LANES):
                        t = row[i + j] - m
                        lt[j] += t
                        lq[j] += t * t
                st, sq = _lane_total(lt), _lane_total(lq)
                for i in range(full, row.shape[0]):
                    t = row[i] - m
                    st += t
                    sq += t * t
                out[0, c - c0] += st
                out[1, c - c0] += sq
        return out
    x2, start, stop = _runs(x3, box)
    shifts = _per_column(shift, x3, box)
    columns = np.zeros((2, stop - start))
    for j0 in range(0, stop - start, COLUMNS):
        s, ct, cq = shifts[j0 : j0 + COLUMNS], columns[0, j0:], columns[1, j0:]
        for n in range(n0, n1):
            run = x2[n, start + j0 : start + j0 + s.shape[0]]
            for j in range(s.shape[0]):
                t = run[j] - s[j]
                ct[j] += t
                cq[j] += t * t
    for k in range(2):
        _add_columns(columns[k], x3.shape[2], out[k])
    return out


@_compiled
def shifted_sums_with(x3: Array, shift: Array, o3: Array, box: Bounds) -> Array:
    """Per channel of the box, with t = x - shift[c] and o3 of x's shape: the rows sum(t),
    sum(t * t), sum(o), sum(o * t) of a (4, c1 - c0) array."""
    n0, n1, c0, c1, l0, l1 = box
    out = np.zeros((4, c1 - c0))
    if _by_rows(x3, box):
        lanes = np.empty((4, LANES))
        for n in range(n0, n1):
            for c in range(c0, c1):
                row, o_row, m = x3[n, c, l0:l1], o3[n, c, l0:l1], shift[c]
                full = row.shape[0] - row.shape[0] % LANES
                lanes[:] = 0.0
                lt, lq, lo, lp = lanes[0], lanes[1], lanes[2], lanes[3]
                for i in range(0, full, LANES):
                    for j in range(LANES):
                        t, o = row[i + j] - m, np.float64(o_row[i + j])
                        lt[j] += t
                        lq[j] += t * t
                        lo[j] += o
                        lp[j] += o * t
                st, sq = _lane_total(lt), _lane_total(lq)
                so, sp = _lane_total(lo), _lane_total(lp)
                for i in range(full, row.shape[0]):
                    t, o = row[i] - m, np.float64(o_row[i])
                    st += t
                    sq += t * t
                    so += o
                    sp += o * t
                out[0, c - c0] += st
                out[1, c - c0] += sq
                out[2, c - c0] += so
                out[3, c - c0] += sp
        return out
    (x2, start, stop), (o2, _, _) = _runs(x3, box), _runs(o3, box)
    shifts = _per_column(shift, x3, box)
    columns = np.zeros((4, stop - start))
    for j0 in range(0, stop - start, COLUMNS):
        s = shifts[j0 : j0 + COLUMNS]
        ct, cq, co, cp = columns[0, j0:], columns[1, j0:], columns[2, j0:], columns[3, j0:]
        for n in range(n0, n1):
            run = x2[n, start + j0 : start + j0 + s.shape[0]]
            o_run = o2[n, start + j0 : start + j0 + s.shape[0]]
            for j in range(s.shape[0]):
                t, o = run[j] - s[j], np.float64(o_run[j])
                ct[j] += t
                cq[j] += t * t
                co[j] += o
                cp[j] += o * t
    for k in range(4):
        _add_columns(columns[k], x3.shape[2], out[k])
    return out


@_compiled
def normalize(
    x3: Array, channel: tuple[Array, Array, Array, Array], x_hat3: Array, y3: Array, box: Bounds
) -> bool:
    """With channel = (mean, inv_std, gamma, beta): x_hat = (x - mean[c]) * inv_std[c] and
    y = gamma[c] * x_hat + beta[c] on the box; whether every y is finite (a value of x_hat
    beyond float64 makes its y so too)."""
    n0, n1, c0, c1, l0, l1 = box
    mean, inv_std, gamma, beta = channel
    finite = True
    if _by_rows(x3, box):
        for n in range(n0, n1):
            for c in range(c0, c1):
                m, s, g, b = mean[c], inv_std[c], gamma[c], beta[c]
                row, h_row, y_row = x3[n, c, l0:l1], x_hat3[n, c, l0:l1], y3[n, c, l0:l1]
                for i in range(row.shape[0]):
                    h = (row[i] - m) * s
                    y = g * h + b
                    h_row[i], y_row[i] = h, y
                    finite &= abs(y) < np.inf
        return finite
    (x2, start, stop), (h2, _, _), (y2, _, _) = _runs(x3, box), _runs(x_hat3, box), _runs(y3, box)
    means, scales = _per_column(mean, x3, box), _per_column(inv_std, x3, box)
    gammas, betas = _per_column(gamma, x3, box), _per_column(beta, x3, box)
    for n in range(n0, n1):
        run, h_run, y_run = x2[n, start:stop], h2[n, start:stop], y2[n, start:stop]
        for j in range(run.shape[0]):
            h = (run[j] - means[j]) * scales[j]
            y = gammas[j] * h + betas[j]
            h_run[j], y_run[j] = h, y
            finite &= abs(y) < np.inf
    return finite


@_compiled
def gradient(
    x3: Array, dy3: Array, channel: tuple[Array, Array, Array, Array], dx3: Array, box: Bounds
) -> bool:
    """With channel = (mean, dy_factor, deviation_factor, shift): dx = (dy * dy_factor[c] -
    (x - mean[c]) * deviation_factor[c]) - shift[c] on the box; whether every dx is finite."""
    n0, n1, c0, c1, l0, l1 = box
    mean, dy_factor, deviation_factor, shift = channel
    finite = True
    if _by_rows(x3, box):
        for n in range(n0, n1):
            for c in range(c0, c1):
                m, fy, fv, s = mean[c], dy_factor[c], deviation_factor[c], shift[c]
                row, o_row, d_row = x3[n, c, l0:l1], dy3[n, c, l0:l1], dx3[n, c, l0:l1]
                for i in range(row.shape[0]):
                    d = (np.float64(o_row[i]) * fy - (row[i] - m) * fv) - s
                    d_row[i] = d
                    finite &= abs(d) < np.inf
        return finite
    (x2, start, stop), (o2, _, _), (d2, _, _) = _runs(x3, box), _runs(dy3, box), _runs(dx3, box)
    means, fys = _per_column(mean, x3, box), _per_column(dy_factor, x3, box)
    fvs, shifts = _per_column(deviation_factor, x3, box), _per_column(shift, x3, box)
    for n in range(n0, n1):
        run, o_run, d_run = x2[n, start:stop], o2[n, start:stop], d2[n, start:stop]
        for j in range(run.shape[0]):
            d = (np.float64(o_run[j]) * fys[j] - (run[j] - means[j]) * fvs[j]) - shifts[j]
            d_run[j] = d
            finite &= abs(d) < np.inf
    return finite
