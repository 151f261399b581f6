#!/usr/bin/env -S uv run --script
# /// script
# dependencies = ["nox>=2025.02.09"]
# ///
"""Nox sessions: `nox` runs tests, typecheck and lint; `nox -s thorough` the 1000-example run."""

from __future__ import annotations

import nox

# nox.main() and the script block above (`./noxfile.py` runs nox with uv) came in 2025.02.09.
nox.needs_version = ">=2025.02.09"
# uv makes a fresh environment in seconds; fall back to virtualenv where uv is missing.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True

CODE = [
    "reference",
    "properties",
    "bnref",
    "tests",
    "benchmarks",
    "docs",
    "tools",
    "noxfile.py",
]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite with the Hypothesis profile of the environment (`ci` under CI), one worker
    per core (pytest-xdist); the profile is derandomized under CI, so the split changes nothing."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session(default=False)
def thorough(session: nox.Session) -> None:
    """Every property with >= 1000 examples (the `thorough` Hypothesis profile)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"BNREF_PROFILE": "thorough", "CI": ""})


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the reference, the properties and the tests."""
    session.install("-e", ".[dev,docs]")
    session.run("mypy", "--strict", *CODE)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *CODE)
    session.run("ruff", "format", "--check", *CODE)


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """The site: the committed full-run figures checked in place (`nox -s figures` makes them),
    the HTML with warnings as errors and no remote loads, then every code example on it run and
    checked (sphinx doctest)."""
    session.install("-e", ".[docs]")
    session.run("python", "docs/generate_figures.py")
    build = ["sphinx-build", "-W", "--keep-going", "-d", "docs/_build/doctrees"]
    # -E: a fresh environment, so -W reports the warnings of every page, not only changed ones.
    session.run(*build, "-E", "-b", "html", "docs", "docs/_build/html")
    session.run("python", "docs/check_offline.py", "docs/_build/html")  # nothing from a CDN
    session.run(*build, "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(default=False)
def figures(session: nox.Session) -> None:
    """The site's figures: every experiment in full (5 to 7 minutes on 2 busy cores) into
    docs/figures/, with the command and commit beside them; fails if a claim does not hold.
    Commit what it writes (docs/generate_figures.py)."""
    session.install("-e", ".[experiments]")
    session.run("python", "docs/generate_figures.py", "--full")


@nox.session(default=False)
def check(session: nox.Session) -> None:
    """The main job, `bnref check`, as a user runs it."""
    session.install(".")
    session.run("bnref", "check", *session.posargs)


# `bnref check` targets other than bnref's own (bnref.targets.TARGETS without reference, fast).
ORACLE_TARGETS = (
    "torch",
    "onnx",
    "onnxruntime",
    "jax",
    "flax",
    "flax-slow",
    "keras-numpy",
    "keras-jax",
    "keras-torch",
    "keras-tensorflow",
    "tensorflow",
)


@nox.session(venv_backend="venv", default=False)
def oracle(session: nox.Session) -> None:
    """Every framework target that installs: PyTorch, the ONNX reference evaluator, ONNX
    Runtime, JAX, Flax, Keras 3 on each backend and TensorFlow; their adapters' tests
    (`pytest -m oracle`: the differential comparison with the reference in float64, float32,
    float16 and bfloat16, and the plumbing of each adapter), then `bnref check TARGET` in
    float64 and float32 for each, one process per target (Keras fixes its backend per process).
    Findings are reported in the tables and oracle-TARGET.json, not failed (exit 0 or 1).

    The venv backend, so pip installs: on these machines `pip install torch==2.13.0` takes the
    CPU wheel that lies on disk, where uv would download a CUDA build of several GB. TensorFlow
    is a large wheel of its own and not built for every platform: where it does not install,
    its two targets are left out with the reason in the log (their tests say so too).
    """
    session.install("torch==2.13.0")
    session.install("-e", ".[test,onnx,flax,keras,bfloat16]")
    targets = list(ORACLE_TARGETS)
    try:
        session.install("-e", ".[tensorflow]")
    except nox.command.CommandFailed:
        session.warn(
            "TensorFlow did not install on this platform: the tensorflow and keras-tensorflow "
            "targets are left out"
        )
        targets = [t for t in targets if "tensorflow" not in t]
    session.run("pytest", "-m", "oracle", "-o", "log_cli=true", *session.posargs)
    for target in targets:
        session.run(
            "bnref",
            "check",
            target,
            "--dtype",
            "float64,float32",
            "--json",
            f"oracle-{target}.json",
            success_codes=[0, 1],
        )
    bfloat16 = ["--dtype", "bfloat16", "--json", "oracle-torch-bfloat16.json"]
    session.run("bnref", "check", "torch", *bfloat16, success_codes=[0, 1])


@nox.session(venv_backend="venv", default=False)
def bench(session: nox.Session) -> None:
    """Speed and memory of the batch norm against PyTorch, ONNX and a textbook NumPy version.

    Printed, never asserted: speed is measured here, not in tests. The venv backend, so pip
    takes the torch CPU wheel on disk (see `oracle`).
    """
    session.install("torch==2.13.0")
    session.install("-e", ".[onnx,fast]")  # fast: the engine's compiled block kernels
    session.run("python", "-m", "benchmarks.bench_batchnorm", *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutation testing of reference/ with mutmut, then each module's score and the
    surviving mutants (tools/mutation_report.py); a module below 95% fails the session.

    Not in the default run. The `mutation` Hypothesis profile is `ci`'s derandomized examples
    without shrinking, so every mutant meets the same examples. Config in [tool.mutmut];
    tools/mutation_run.py limits each mutant to its module's test files, the tests that killed
    its function's other mutants first and then fastest first, and skips the accepted
    equivalent mutants whose fingerprint still matches (tools/mutation_accepted.py). mutmut
    works in mutants/ and keeps its results there: a run without arguments retries only the
    mutants not yet decided. Arguments are mutant-name globs, run again and reported alone:
    `nox -s mutation -- "reference.ghost.*"`.
    """
    session.install("-e", ".[mutation]")
    profile = {"BNREF_PROFILE": "mutation", "CI": ""}  # CI would select `ci` (with shrinking)
    session.run(
        "python",
        "tools/mutation_run.py",
        "run",
        "--max-children",
        "2",
        *session.posargs,
        env=profile,
    )
    session.run(
        "python",
        "tools/mutation_report.py",
        "--accepted",
        "tools/mutation_accepted.txt",
        "--fail-under",
        "95",
        *session.posargs,
    )


if __name__ == "__main__":
    nox.main()
