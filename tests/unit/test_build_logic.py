"""Pure logic of the build step: package sources, failed-step parsing, the runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gpuimages.build.image import PackageSources, base_pull_remedy, context_root, failed_step
from gpuimages.core.errors import CommandError, UserInputError
from gpuimages.core.runner import run
from gpuimages.facts.variant import VariantRequest, resolve


@pytest.fixture
def cpu(compat):
    return resolve(VariantRequest(torch="2.13.0", cuda="cpu"), compat)


@pytest.fixture
def gpu_hvd(compat):
    return resolve(VariantRequest(torch="2.1.2", cuda="11.8", horovod="0.28.1"), compat)


def test_base_override_also_sets_builder_when_they_are_the_same(cpu):
    args = PackageSources(base_image="mirror/debian:12").build_args(cpu)
    assert args == {"BASE_IMAGE": "mirror/debian:12", "BUILDER_IMAGE": "mirror/debian:12"}


def test_base_override_keeps_cuda_devel_builder_for_horovod(gpu_hvd):
    args = PackageSources(base_image="mirror/cuda:11.8-runtime").build_args(gpu_hvd)
    assert "BUILDER_IMAGE" not in args  # the Dockerfile's devel default stays


def test_offline_and_mirrors_become_build_args(cpu, tmp_path):
    src = PackageSources(
        wheelhouse=tmp_path,
        offline=True,
        apt_mirror="http://m/debian",
        pip_index_url="https://pypi.example/simple",
    )
    src.validate()
    assert src.build_args(cpu) == {
        "GPUIMAGES_OFFLINE": "1",
        "APT_MIRROR": "http://m/debian",
        "PIP_INDEX_URL": "https://pypi.example/simple",
    }


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"pip_index_url": "https://user:tok@pypi.example/simple"}, "carries credentials"),
        ({"pip_index_url": "ftp://x"}, r"not an http\(s\) URL"),
        ({"wheelhouse": Path("/nonexistent/wh")}, "is not a directory"),
        ({"offline": True}, "add --wheelhouse"),
        ({"ca_bundle": Path("/nonexistent/ca.pem")}, "is not a file"),
    ],
)
def test_bad_sources_are_refused(kwargs, words):
    with pytest.raises(UserInputError, match=words):
        PackageSources(**kwargs).validate()


def test_sources_merge_cli_over_matrix(tmp_path):
    merged = PackageSources.merged(
        {"apt_mirror": "http://a", "wheelhouse": str(tmp_path)},
        apt_mirror="http://b",
        wheelhouse=None,
    )
    assert merged.apt_mirror == "http://b" and merged.wheelhouse == tmp_path


PLAIN_LOG = """\
#7 [builder 2/3] RUN --mount=type=bind,source=scripts/image /opt/gpuimages/build/apt-install.sh
#7 DONE 8.1s
#8 [builder 3/3] RUN --mount=type=bind,source=wheelhouse /opt/gpuimages/build/pip-install.sh
#8 1.2 ERROR: No matching distribution found for torch==2.13.0+cpu
#8 ERROR: executor failed running [/bin/bash -o pipefail -c ...]: exit code: 1
"""


def test_failed_step_is_named():
    assert failed_step(PLAIN_LOG).startswith("[builder 3/3] RUN")
    assert failed_step("#1 [internal] load\n#1 DONE") is None


# What `invoke build --torch 1.12.0 --cuda 11.3` logged on a host with no route to Docker
# Hub (BuildKit of docker.io 20.10.24, this project's CI machine).
NO_HUB_LOG = """#3 [internal] load metadata for docker.io/library/ubuntu:20.04
#3 sha256:8e67b796a66f85f06793e026943184e32d365c77929e94d2ac98b34a1e1cb30e
#3 ERROR: failed to do request: Head "https://registry-1.docker.io/v2/library/ubuntu/manifests/20.04": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host
"""  # noqa: E501


def test_an_unreachable_base_gets_the_remedy():
    step = failed_step(NO_HUB_LOG)
    assert step == "[internal] load metadata for docker.io/library/ubuntu:20.04"
    remedy = base_pull_remedy(step)
    assert "--base-image <mirror>/ubuntu:20.04" in remedy
    assert "docker save ubuntu:20.04 -o base.tar" in remedy and "docker load -i" in remedy
    assert base_pull_remedy("[builder 3/3] RUN pip install torch") is None
    assert base_pull_remedy(None) is None


def test_failed_step_drops_the_mount_options():
    mounts = " ".join(f"--mount=type=secret,id=s{i}" for i in range(20))  # longer than 300
    log = f"#8 [builder 3/3] RUN {mounts}     /opt/gpuimages/build/pip-install.sh python3.11\n"
    log += "#8 ERROR: executor failed running [...]: exit code: 1\n"
    assert failed_step(log) == "[builder 3/3] RUN /opt/gpuimages/build/pip-install.sh python3.11"


def test_runner_logs_masks_and_raises_with_tail(tmp_path):
    log = tmp_path / "x.log"
    code = "print('token=s3cret'); import sys; sys.exit(3)"
    with pytest.raises(CommandError) as err:
        run([sys.executable, "-c", code], log_path=log, secrets=["s3cret"], what="demo")
    assert "demo failed (exit code 3)" in str(err.value)
    assert "s3cret" not in str(err.value) and "token=***" in err.value.tail
    assert "s3cret" not in log.read_text()


def test_runner_timeout_kills(tmp_path):
    with pytest.raises(CommandError, match="timed out after 1 s"):
        run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


def test_second_build_of_a_variant_waits_and_names_the_holder(compat, tmp_path, caplog):
    import threading
    import time

    from gpuimages.build.image import variant_lock
    from gpuimages.facts.variant import VariantRequest, resolve

    variant = resolve(VariantRequest("2.13.0", "cpu"), compat)
    held = threading.Event()

    def first():
        with variant_lock(variant, tmp_path):
            held.set()
            time.sleep(1.0)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    start = time.monotonic()
    with caplog.at_level("WARNING"), variant_lock(variant, tmp_path):
        waited = time.monotonic() - start
    thread.join()
    assert waited >= 0.5, waited
    assert f"{variant.tag} is being built by pid " in caplog.text


def test_waiting_for_the_lock_ends_on_stop(compat, tmp_path):
    import threading

    from gpuimages.build.image import variant_lock
    from gpuimages.core.errors import GpuImagesError
    from gpuimages.facts.variant import VariantRequest, resolve

    variant = resolve(VariantRequest("2.13.0", "cpu"), compat)
    stopping = threading.Event()
    stopping.set()
    with (
        variant_lock(variant, tmp_path),
        pytest.raises(GpuImagesError, match="stopped while waiting"),
        variant_lock(variant, tmp_path, stopping=stopping),
    ):
        pass


def test_contexts_are_staged_under_the_build_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("GPUIMAGES_CONTEXT_DIR", raising=False)
    assert context_root(tmp_path / "build") == tmp_path / "build" / "context"
    assert (tmp_path / "build" / "context").is_dir()


def test_a_context_folder_named_is_used_for_every_build_folder(tmp_path, monkeypatch):
    shared = tmp_path / "shared-context"
    monkeypatch.setenv("GPUIMAGES_CONTEXT_DIR", str(shared))
    assert context_root(tmp_path / "one") == context_root(tmp_path / "two") == shared


def test_an_unusable_context_folder_is_one_paragraph_naming_it(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GPUIMAGES_CONTEXT_DIR", str(blocker / "context"))
    with pytest.raises(UserInputError) as err:
        context_root(tmp_path / "build")
    text = str(err.value)
    assert f"GPUIMAGES_CONTEXT_DIR={blocker / 'context'}" in text
    assert "Not a directory" in text and "\n" not in text
