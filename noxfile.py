"""nox sessions: the same steps as the invoke tasks, each in its own venv, for CI runners.

`nox` runs lint, tests and render_check; `nox -s ci` runs exactly what CI runs (.ci/run);
`nox -l` lists every session. Per-variant sessions are named by the variant:
`nox -s "build(2.13.0-cpu-runtime)"`; they read the matrix file GPUIMAGES_MATRIX names
(default matrix.yaml), as the CI workflow sets it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent))
MATRIX = os.environ.get("GPUIMAGES_MATRIX") or "matrix.yaml"
try:  # the per-variant sessions are parametrized from the matrix
    from gpuimages.facts.matrix import load_matrix

    VARIANTS = [v.name for v in load_matrix(MATRIX).variants]
except ImportError as exc:  # nox without gpuimages' dependencies: no per-variant sessions
    VARIANTS = []
    print(
        f"noxfile: no per-variant sessions ({exc}): install gpuimages where nox runs "
        "(`python -m pip install nox -e .`)",
        file=sys.stderr,
    )

nox.options.sessions = ["lint", "tests", "render_check"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format) over the code, hadolint over every rendered Dockerfile."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    dockerfiles = sorted(str(p) for p in Path("dockerfiles").glob("*/Dockerfile"))
    session.run("hadolint", *dockerfiles, "tests/integration/registry/Dockerfile")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """pytest; pass extra pytest arguments after `--` (e.g. `-m "not docker"`)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)  # --strict-markers: pyproject addopts


@nox.session(venv_backend="none")
def ci(session: nox.Session) -> None:
    """Exactly what CI runs: .ci/run (the README's test command, Docker tests required)."""
    session.run("bash", ".ci/run", *session.posargs, external=True)


@nox.session(python=PYTHON)
def act(session: nox.Session) -> None:
    """The CI workflow run by act on this host, CPU variant, push to main (docs/ci.md)."""
    # Needs a Docker engine (started when none answers and we are root); pytest arguments
    # after `--`. Marketplace actions are replaced by tests/act/actions/ for this run only.
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "act", "tests/integration/test_workflow_act.py", *session.posargs)


@nox.session(python=PYTHON)
def render_check(session: nox.Session) -> None:
    """Fail when dockerfiles/ has drifted from templates/ and matrix.yaml."""
    session.install("-e", ".")
    session.run("invoke", "render", "--check")


# Per-variant sessions for GPU CI runners, named by the variant, e.g.
#   nox -s "build(1.12.0-cuda11.3-cudnn8-runtime)"
#   nox -s "smoke(1.12.0-cuda11.3-cudnn8-runtime)" -- --require-gpus 2
# Extra arguments after `--` go to the invoke task.


@nox.session(python=PYTHON)
@nox.parametrize("variant", VARIANTS, ids=VARIANTS)
def build(session: nox.Session, variant: str) -> None:
    """Build one variant's image (BuildKit)."""
    session.install("-e", ".")
    session.run("invoke", "build", "--variant", variant, "--matrix", MATRIX, *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("variant", VARIANTS, ids=VARIANTS)
def smoke(session: nox.Session, variant: str) -> None:
    """Smoke-test one built variant; reports in reports/smoke/ (JSON + JUnit XML)."""
    session.install("-e", ".")
    session.run("invoke", "smoke", "--variant", variant, "--matrix", MATRIX, *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("variant", VARIANTS, ids=VARIANTS)
def publish(session: nox.Session, variant: str) -> None:
    """Push one smoke-tested variant; release manifest in reports/release/<UTC time>/."""
    # Extra `invoke publish` options after `--`, e.g. `-- --registry ghcr.io/my-org`.
    # Credentials: GPUIMAGES_REGISTRY_USER / GPUIMAGES_REGISTRY_PASSWORD, or docker login.
    session.install("-e", ".")
    session.run("invoke", "publish", "--variant", variant, "--matrix", MATRIX, *session.posargs)


@nox.session(python=PYTHON)
def promote(session: nox.Session) -> None:
    """Copy smoke-tested digests from staging to the public registry (no rebuild)."""
    # Options after `--`: --from REG/NS --to REG/NS [--variant NAME] [--manifest DIR].
    session.install("-e", ".")
    session.run("invoke", "promote", *session.posargs)
