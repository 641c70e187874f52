"""Every kind of bad matrix input is refused with one clear paragraph."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.matrix import load_matrix


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserInputError) as err:
        load_matrix(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message.strip(), "one paragraph"
    return message


def test_shipped_matrix_loads(repo_root):
    m = load_matrix(repo_root / "matrix.yaml")
    names = {v.name for v in m.variants}
    for cuda in ("11.3", "11.6"):
        assert f"1.12.0-cuda{cuda}-cudnn8-runtime" in names
    assert "1.12.0-cuda10.2-cudnn7-runtime" in names  # cu102 bundles cuDNN 7.6.5
    assert "1.12.0-cuda11.3-cudnn8-devel" in names
    assert {
        "2.1.2-cuda11.8-cudnn8-runtime",
        "2.3.1-cuda12.1-cudnn8-runtime",
        "2.5.1-cuda12.4-cudnn9-runtime",
    } <= names
    assert {"2.13.0-cpu-runtime", "2.13.0-cpu-devel", "2.13.0-cpu-runtime-horovod0.28.1"} <= names
    assert any(v.horovod and not v.is_cpu for v in m.variants)
    assert all(v.size_budget_mb for v in m.variants)


def test_axes_cross_product_exclude_include(tmp_path):
    m = load_matrix(
        write(
            tmp_path,
            """
        repository: example/torch
        defaults: {flavor: runtime}
        axes:
          - {torch: 1.12.0, cuda: [10.2, 11.3], flavor: [runtime, devel]}
        exclude:
          - {cuda: cu102, flavor: devel}
        include:
          - {torch: 2.13.0, cuda: cpu, torchvision: none}
    """,
        )
    )
    assert [v.name for v in m.variants] == [
        "1.12.0-cuda10.2-cudnn7-runtime",
        "1.12.0-cuda11.3-cudnn8-runtime",
        "1.12.0-cuda11.3-cudnn8-devel",
        "2.13.0-cpu-runtime",
    ]
    assert m.variants[0].tag == "example/torch:1.12.0-cuda10.2-cudnn7-runtime"


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    msg = refused(
        tmp_path,
        """
        axes:
          - torch: [1.12.0
            cuda: 11.3
    """,
    )
    assert "YAML syntax error at line" in msg and "column" in msg


def test_duplicate_yaml_key_is_refused(tmp_path):
    msg = refused(
        tmp_path,
        """
        axes:
          - {torch: 1.12.0, cuda: 11.3, cuda: 11.6}
    """,
    )
    assert "duplicate key 'cuda'" in msg


def test_unknown_top_key_did_you_mean(tmp_path):
    msg = refused(tmp_path, "axis:\n  - {torch: 1.12.0, cuda: 11.3}\n")
    assert "unknown key 'axis'" in msg and "did you mean 'axes'" in msg


def test_unknown_entry_key_did_you_mean(tmp_path):
    msg = refused(tmp_path, "axes:\n  - {torch: 1.12.0, cuda: 11.3, flavour: devel}\n")
    assert "axes[0]" in msg and "did you mean 'flavor'" in msg


def test_incompatible_combination_names_nearest(tmp_path):
    msg = refused(tmp_path, "axes:\n  - {torch: 1.12.0, cuda: [11.3, 12.1]}\n")
    assert "axes[0]" in msg
    assert "torch 1.12.0 has CUDA wheels for 10.2, 11.3, 11.6" in msg


def test_cudnn_never_shipped(tmp_path):
    msg = refused(tmp_path, "include:\n  - {torch: 2.5.1, cuda: 12.4, cudnn: 8}\n")
    assert "include[0]" in msg and "cuDNN 9, not cuDNN 8" in msg


def test_python_never_shipped(tmp_path):
    msg = refused(tmp_path, "axes:\n  - {torch: 1.12.0, cuda: 11.3, python: 3.12}\n")
    assert "Python 3.12" in msg and "never shipped a wheel" in msg


def test_duplicate_variants(tmp_path):
    msg = refused(
        tmp_path,
        """
        axes:
          - {torch: 1.12.0, cuda: 11.3}
        include:
          - {torch: 1.12.0, cuda: cu113, flavor: runtime}
    """,
    )
    assert "duplicate variant 1.12.0-cuda11.3-cudnn8-runtime" in msg and "axes[0]" in msg


def test_missing_cuda(tmp_path):
    msg = refused(tmp_path, "axes:\n  - {torch: 1.12.0}\n")
    assert "'cuda' is missing" in msg


def test_settings_are_not_axes(tmp_path):
    msg = refused(tmp_path, "axes:\n  - {torch: 1.12.0, cuda: 11.3, size_budget_mb: [1, 2]}\n")
    assert "setting, not an axis" in msg


def test_bad_size_budget(tmp_path):
    msg = refused(tmp_path, "axes:\n  - {torch: 1.12.0, cuda: 11.3, size_budget_mb: big}\n")
    assert "size_budget_mb" in msg and "'big'" in msg


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="no such file"):
        load_matrix(tmp_path / "nope.yaml")


def test_float_looking_versions_stay_strings(tmp_path):
    m = load_matrix(write(tmp_path, "axes:\n  - {torch: 1.12.0, cuda: 11.3, python: 3.9}\n"))
    assert m.variants[0].python == "3.9" and m.variants[0].cuda == "11.3"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("repository: x/pytorch\naxes: []\n", "0 axes group(s) expand to 0 entries"),
        (
            "axes:\n  - {torch: 2.13.0, cuda: cpu, torchvision: none}\n"
            "exclude:\n  - {torch: 2.13.0}\n",
            "expand to 1 entry, all removed by exclude",
        ),
    ],
)
def test_a_matrix_that_gives_no_variant_is_refused(tmp_path, text, says):
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    with pytest.raises(UserInputError, match="gives no variant to build") as caught:
        load_matrix(path)
    assert says in str(caught.value)
