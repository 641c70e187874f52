"""Registry strings and package sources are parsed once, so every task agrees on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuimages.build.tagging import alias_tags
from gpuimages.core.errors import UserInputError
from gpuimages.facts.compat import load_compat
from gpuimages.facts.matrix import parse_matrix
from gpuimages.facts.registry_address import Registry
from gpuimages.facts.select import Selection
from gpuimages.facts.sources import PackageSources
from gpuimages.host import launch

ENTRY = {"axes": [{"torch": "2.13.0", "cuda": "cpu"}]}


def matrix_of(**top):
    return parse_matrix({**ENTRY, **top}, Path("m.yaml"), load_compat())


def test_the_matrix_registry_and_sources_are_typed_at_load(tmp_path):
    m = matrix_of(registry="127.0.0.1:5000/team", sources={"wheelhouse": str(tmp_path)})
    assert m.registry == Registry("127.0.0.1:5000", "team", "http")
    assert m.sources == PackageSources(wheelhouse=tmp_path)
    with pytest.raises(UserInputError, match=r"m\.yaml: registry: registry .a b/c. is not"):
        matrix_of(registry="a b/c")
    # an authenticated mirror: the login is split off, to travel as a BuildKit secret
    m = matrix_of(sources={"pip_index_url": "https://u:p@mirror/simple"})
    assert m.sources.pip_index_url == "https://mirror/simple"
    assert m.sources.pip_login and m.sources.pip_login.password == "p"
    with pytest.raises(UserInputError, match="query string"):
        matrix_of(sources={"pip_index_url": "https://mirror/simple?token=abc"})


@pytest.mark.parametrize("bad", ["a b", "user@host", "host:port:x", "ftp://host"])
def test_tag_launch_and_publish_refuse_the_same_registries(bad, tmp_path):
    with pytest.raises(UserInputError):
        Registry.parse(bad)  # publish
    with pytest.raises(UserInputError):
        Registry.choose(bad, None)  # tag
    selection = Selection.from_options(
        {"variant": "2.13.0-cpu-runtime", "matrix": Path(__file__).parents[2] / "matrix.yaml"}
    )
    with pytest.raises(UserInputError):
        launch.plan_from_options(
            selection, nodes=2, gpus_per_node=1, master_addr="10.0.0.1", registry=bad
        )


def test_tags_come_from_the_parsed_registry():
    m = matrix_of(registry="https://ghcr.io/team/")
    [variant] = m.variants
    assert Registry.choose(None, m.registry).tag_for(variant) == (
        f"ghcr.io/team/gpuimages/pytorch:{variant.name}"
    )
    assert alias_tags(variant, ("latest",), m.registry) == [
        "gpuimages/pytorch:latest",
        "ghcr.io/team/gpuimages/pytorch:latest",
    ]
