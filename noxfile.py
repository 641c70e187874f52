"""nox sessions: the same steps as the invoke tasks, each in its own venv, for CI runners.

`nox` runs lint, tests and render_check; `nox -l` lists every session.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "render_check"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the code, hadolint over every rendered Dockerfile."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    dockerfiles = sorted(str(p) for p in Path("dockerfiles").glob("*/Dockerfile"))
    session.run("hadolint", *dockerfiles)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """pytest; pass extra pytest arguments after `--` (e.g. `-m "not docker"`)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def render_check(session: nox.Session) -> None:
    """Fail when dockerfiles/ has drifted from templates/ and matrix.yaml."""
    session.install("-e", ".")
    session.run("invoke", "render", "--check")
