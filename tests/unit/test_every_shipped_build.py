"""Every torch release x CUDA build x Python that PyTorch shipped resolves; what it never
shipped is refused with the nearest choices.

The walk reads the shipped compatibility data (compat.yaml's `torch:` block, audited
against the sources named there), so a build added to the data is checked here at once.
"""

from __future__ import annotations

import pytest
from packaging.version import Version

from gpuimages.core.errors import UserInputError
from gpuimages.facts.compat import load_compat
from gpuimages.facts.variant import Variant, VariantRequest, resolve

COMPAT = load_compat()


def _shipped() -> list[tuple[str, str, str]]:
    rows = []
    for torch in sorted(COMPAT.torch, key=Version):
        release = COMPAT.torch[torch]
        for build in release.builds():
            rows.extend((torch, build, python) for python in release.pythons(build))
    return rows


SHIPPED = _shipped()


def _param(torch: str, build: str, python: str):
    return pytest.param(torch, build, python, id=f"{torch}-{build}-py{python}")


def test_the_walk_covers_every_release_through_the_newest():
    releases = {t for t, _, _ in SHIPPED}
    assert releases == set(COMPAT.torch), "every release has at least one build with a Python"
    assert max(releases, key=Version) == "2.15.0", "PyPI's newest release (2026-12-06)"
    assert len(SHIPPED) > 500


@pytest.mark.parametrize(("torch", "build", "python"), [_param(*row) for row in SHIPPED])
def test_every_shipped_build_resolves(torch, build, python):
    variant = resolve(VariantRequest(torch=torch, cuda=build, python=python), COMPAT)
    assert isinstance(variant, Variant)
    assert (variant.torch, variant.cuda, variant.python) == (torch, build, python)
    assert python in COMPAT.torch[torch].pythons(build)


@pytest.mark.parametrize(
    ("request_kwargs", "words"),
    [
        # a CUDA the release never had: the release's builds, the nearest first
        ({"torch": "1.11.0", "cuda": "11.6"}, ["10.2, 11.3, 11.5", "Nearest: 11.5"]),
        ({"torch": "2.7.1", "cuda": "12.4"}, ["11.8, 12.6, 12.8", "Nearest: 12.6"]),
        ({"torch": "2.15.0", "cuda": "12.6"}, ["13.2"]),
        # a Python no wheel of the build has: the build's Pythons
        ({"torch": "2.0.1", "cuda": "11.8", "python": "3.12"}, ["3.8, 3.9, 3.10", "3.11"]),
        ({"torch": "2.15.0", "cuda": "13.2", "python": "3.10"}, ["3.11", "3.15"]),
        ({"torch": "1.12.1", "cuda": "11.6", "python": "3.11"}, ["3.7", "3.10"]),
        # a release that never was: the nearest releases
        ({"torch": "2.13.1", "cuda": "13.0"}, ["Nearest known releases", "2.13.0", "2.14.0"]),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
def test_never_shipped_is_a_clear_no_with_the_nearest_choices(request_kwargs, words):
    with pytest.raises(UserInputError) as err:
        resolve(VariantRequest(**request_kwargs), COMPAT)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
