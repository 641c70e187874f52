"""One selection type, one place for its options: what every selecting task shares."""

from __future__ import annotations

from pathlib import Path

import pytest

import tasks
from gpuimages.core.errors import UserInputError
from gpuimages.core.options import AXES, HELP
from gpuimages.facts.matrix import AXES as MATRIX_AXES
from gpuimages.facts.matrix import SETTINGS
from gpuimages.facts.select import Selection
from gpuimages.facts.variant import VariantRequest

SHARED = {*AXES, "variant", "matrix"}


def options_of(task) -> dict[str, object]:
    return {a.name: a for a in task.get_arguments()}


def test_axes_are_the_matrix_keys_and_the_request_fields():
    assert tuple(AXES) == MATRIX_AXES
    assert set(VariantRequest.field_names()) == set(AXES) | set(SETTINGS)
    assert set(AXES) <= set(HELP)


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        (tasks.build, {"all"}),
        (tasks.wheelhouse, {"all"}),
        (tasks.tag, {"all"}),
        (tasks.smoke, {"all"}),
        (tasks.publish, {"all"}),
        (tasks.doctor_task, set()),
        (tasks.run_task, set()),
    ],
)
def test_selecting_tasks_share_the_options_and_their_help(task, extra):
    options = options_of(task)
    assert SHARED | extra <= set(options)
    for name in SHARED | extra:
        assert options[name].help == HELP[name]


def test_launch_keeps_horovod_as_its_own_switch():
    horovod = options_of(tasks.launch_task)["horovod"]
    assert horovod.kind is bool and "Horovod job" in horovod.help
    assert SHARED - {"horovod"} <= set(options_of(tasks.launch_task))


def test_check_selects_by_axes_only():
    assert set(options_of(tasks.check)) == {*AXES, "matrix", "json"}


def test_from_options_parses_once():
    s = Selection.from_options({"variant": ["a", "b"], "all": False, "matrix": "m.yaml"})
    assert s.names == ("a", "b") and s.matrix == Path("m.yaml") and s.chosen
    assert Selection.from_options({"variant": "a"}).names == ("a",)
    assert Selection.from_options({}).names == () and not Selection.from_options({}).chosen
    request = Selection.from_options({"torch": "1.12.0", "cuda": 11.3}).request()
    assert request == VariantRequest(torch="1.12.0", cuda="11.3")
    assert Selection.from_options({}).request() is None


def test_a_request_needs_torch_and_cuda():
    with pytest.raises(UserInputError, match="--cuda is required"):
        Selection.from_options({"torch": "1.12.0", "flavor": "devel"}).request()
    with pytest.raises(UserInputError, match="--torch is required"):
        Selection.from_options({"cuda": "11.3"}).request()


def test_doctor_without_a_choice_takes_the_whole_matrix(repo_root):
    matrix = repo_root / "matrix.yaml"
    m, variants = Selection.from_options({"matrix": matrix}, everything_by_default=True).variants()
    assert variants == m.variants
    with pytest.raises(UserInputError, match="Say which images"):
        Selection.from_options({"matrix": matrix}).variants()
