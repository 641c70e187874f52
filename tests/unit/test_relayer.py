"""tools/relayer.py: flat module names rewritten to their stage packages, and only once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "relayer.py"


@pytest.fixture(scope="module")
def relayer():
    spec = importlib.util.spec_from_file_location("relayer", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["relayer"] = module
    spec.loader.exec_module(module)
    return module


FLAT = """\
from gpuimages import doctor
from gpuimages import __version__, evidence, launch as launching
from gpuimages.build import BuildResult, build_one
from gpuimages.registry import Registry, RetryPolicy
import gpuimages.release
from gpuimages.cli import command

    with mock.patch("gpuimages.build.run") as run:
        monkeypatch.setattr("gpuimages.smoke_report.SMOKE_REPORTS", tmp_path)
# see gpuimages/manifest.py; label io.gpuimages.variant stays
"""

LAYERED = """\
from gpuimages.host import doctor
from gpuimages import __version__
from gpuimages.vet import evidence
from gpuimages.host import launch as launching
from gpuimages.build.image import BuildResult, build_one
from gpuimages.facts.registry_address import Registry
from gpuimages.release.registry import RetryPolicy
import gpuimages.release.cut
from gpuimages.cli import command

    with mock.patch("gpuimages.build.image.run") as run:
        monkeypatch.setattr("gpuimages.vet.smoke_report.SMOKE_REPORTS", tmp_path)
# see gpuimages/release/manifest.py; label io.gpuimages.variant stays
"""


def test_flat_names_are_rewritten_to_their_stage(relayer):
    assert relayer.rewrite(FLAT) == LAYERED


def test_a_second_run_changes_nothing(relayer):
    assert relayer.rewrite(LAYERED) == LAYERED
    assert relayer.rewrite("from gpuimages.build import image as build\n") == (
        "from gpuimages.build import image as build\n"
    )


def test_a_stage_module_and_an_old_name_on_one_line_part(relayer):
    assert relayer.rewrite("from gpuimages.release import sbom, with_sboms\n") == (
        "from gpuimages.release import sbom\nfrom gpuimages.release.cut import with_sboms\n"
    )


def test_a_module_added_under_a_renamed_name_stays(relayer):
    text = "from gpuimages.release.markdown import cell\nfrom gpuimages.release import markdown\n"
    assert relayer.rewrite(text) == text


def test_a_module_renamed_inside_its_stage_keeps_its_local_name(relayer):
    assert relayer.rewrite("from gpuimages import build\n") == (
        "from gpuimages.build import image as build\n"
    )


def test_every_module_in_the_table_exists_where_it_points(relayer):
    package = TOOL.parents[1]
    missing = [
        new
        for new in relayer.MOVES.values()
        if not (package / f"{new.replace('.', '/')}.py").exists()
    ]
    assert missing == []
