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
        (["--torch", "1.12.0", "--cuda", "11.3", "--python", "3.12"], "never shipped a wheel"),
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


def test_a_reader_that_leaves_early_is_not_a_crash():
    """`invoke ... --json | head`: the pipe closes under a large output; the task stops
    quietly with 141 (as shell tools do), no 'unexpected BrokenPipeError'."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = (
        "from invoke.exceptions import Exit\n"
        "from gpuimages.cli import guarded\n"
        "def body():\n"
        "    for _ in range(100000):\n"
        "        print('x' * 100)\n"
        "try:\n"
        "    guarded(body)()\n"
        "except Exit as e:\n"
        "    raise SystemExit(e.code)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10) == b"x" * 10
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "unexpected" not in err and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.parametrize("args", [["--help", "build"], ["--list"]])
def test_invoke_own_output_to_a_reader_gone_is_not_a_traceback(args):
    """`invoke --help build | head -1`: invoke prints help outside any task. The pipe's
    reader is closed before the program starts, so its first line meets a broken pipe."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert r.returncode == 141, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr


def test_step_progress_on_a_pipe_prints_finished_parts_and_few_figures():
    """In CI logs: every finished check, and a moving figure (push bytes) at most every
    10 s, not every 2 s; a part that begins shows only on a terminal's live line."""
    import io

    from rich.console import Console

    from gpuimages.console import StepProgress

    out = io.StringIO()
    progress = StepProgress("smoke x", Console(file=out, force_terminal=False, width=160))
    with progress:
        for line in ("ddp ...", "ddp: passed (4.2 s) 2 ranks", "1/3 layers", "2/3 layers"):
            progress(line)
    text = out.getvalue()
    assert "  ddp: passed (4.2 s) 2 ranks" in text and "  1/3 layers" in text
    assert "2/3 layers" not in text and "ddp ..." not in text
