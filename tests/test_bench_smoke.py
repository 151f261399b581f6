"""Smoke test of the benchmark: it runs end to end on tiny shapes. Speed is never asserted."""

from __future__ import annotations

import io

import numpy as np
import pytest

from benchmarks import bench_batchnorm as bench
from reference.batchnorm import batch_norm_backward, batch_norm_forward


def test_quick_run_prints_every_row() -> None:
    out = io.StringIO()
    rows = bench.run(quick=True, repeats=1, out=out)
    text = out.getvalue()
    expected = {
        (op, layout, dtype)
        for op in bench.OPS
        for layout in bench.QUICK_SHAPES
        for dtype in bench.DTYPES
    }
    assert {(r.op, r.layout, r.dtype) for r in rows} == expected
    assert all(r.seconds > 0 for r in rows)
    # ONNX has no backward: only forward rows carry an ONNX ratio (or say it is not installed).
    assert all(r.onnx == bench.NO_BACKWARD for r in rows if r.op != "forward")
    assert all(r.reference_seconds > 0 for r in rows)
    assert text.count("peak extra memory of fast") == len(bench.QUICK_SHAPES)
    assert text.count("peak extra memory of reference") == len(bench.QUICK_SHAPES)
    assert "reference/fast" in text
    assert "gradcheck fast" in text
    assert "gradcheck full" in text
    assert "passed=False" not in text


def test_main_quick_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick"]) == 0
    assert "forward+backward" in capsys.readouterr().out


def test_main_rejects_zero_repeats() -> None:
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--repeats", "0"])


@pytest.mark.parametrize("shape", [(64, 16), (4, 3, 5, 5)])
def test_textbook_matches_reference(shape: tuple[int, ...]) -> None:
    # The textbook comparison must compute the same thing as bnref, else the ratio is
    # meaningless. float64, n <= 64 values per channel and unit-scale data: the two orders of
    # summation differ by O(n u) ~ 1e-14 relative; 1e-10 leaves room for 1/std amplification.
    d = bench.make_inputs(shape, "float64")
    y, x_hat, inv_std = bench.textbook_forward(d.x, d.gamma, d.beta)
    dx, dgamma, dbeta = bench.textbook_backward(d.dy, x_hat, inv_std, d.gamma)
    fwd = batch_norm_forward(d.x, d.gamma, d.beta, eps=bench.EPS)
    bwd = batch_norm_backward(d.dy, d.x, d.gamma, eps=bench.EPS)
    np.testing.assert_allclose(y, fwd.y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, bwd.dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dgamma, bwd.dgamma, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dbeta, bwd.dbeta, rtol=1e-10, atol=1e-10)
