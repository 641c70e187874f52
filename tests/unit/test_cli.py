"""The invoke tasks as users run them: exit codes, JSON shape, no tracebacks."""

from __future__ import annotations

import json

import pytest

from tests.helpers import invoke


def test_check_resolves_defaults():
    r = invoke("check", "--torch", "1.12.0", "--cuda", "11.3", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["cudnn"] == "8" and data["flavor"] == "runtime" and data["python"] == "3.8"
    assert data["warnings"] and "end-of-life" in data["warnings"][0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--torch", "1.12.0", "--cuda", "12.1"], "has CUDA wheels for 10.2, 11.3, 11.6"),
        (["--torch", "1.12.0", "--cuda", "11.3", "--python", "3.12"], "supports Python"),
        (["--torch", "1.12.0"], "--cuda is required"),
        (["--torch", "2.1.2", "--cuda", "11.8", "--horovod", "0.28.0"], "does not build"),
    ],
)
def test_check_refuses_with_exit_2_and_no_traceback(args, words):
    r = invoke("check", *args)
    assert r.returncode == 2
    assert words in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_bad_matrix_is_exit_2(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("axes:\n  - {torch: 1.12.0, cuda: 11.3, flavour: devel}\n")
    r = invoke("matrix", "--matrix", str(bad))
    assert r.returncode == 2 and "did you mean 'flavor'" in r.stderr
    assert "Traceback" not in r.stderr


def test_matrix_json_is_ci_fan_out():
    r = invoke("matrix", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 10
    for row in rows:
        for key in (
            "name",
            "tag",
            "torch",
            "cuda",
            "cudnn",
            "flavor",
            "python",
            "os",
            "horovod",
            "base_image",
        ):
            assert key in row
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names))


def test_build_dry_run_prints_plan():
    r = invoke("build", "--torch", "1.12.0", "--cuda", "11.3", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "gpuimages/pytorch:1.12.0-cuda11.3-cudnn8-runtime" in r.stdout
    # os route: a plain Ubuntu 20.04 and the CUDA 11.3 that torch 1.12.0+cu113 bundles.
    assert "ubuntu:20.04" in r.stdout


def test_build_needs_a_selection():
    r = invoke("build", "--dry-run")
    assert r.returncode == 2 and "--all" in r.stderr


def test_build_unknown_variant_did_you_mean():
    r = invoke("build", "--variant", "2.13.0-cpu-runtme", "--dry-run")
    assert r.returncode == 2 and "did you mean '2.13.0-cpu-runtime'" in r.stderr


def test_a_tasks_own_exit_code_is_not_a_crash():
    from invoke.exceptions import Exit

    from gpuimages.cli import guarded

    def body():
        raise Exit(code=3)

    with pytest.raises(Exit) as err:
        guarded(body)()
    assert err.value.code == 3
