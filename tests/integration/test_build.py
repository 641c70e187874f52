"""Real builds on a real engine: the CPU variant from the local base and a wheelhouse."""

from __future__ import annotations

from dataclasses import replace

import docker.errors
import pytest

from gpuimages.build.image import PackageSources, build_many
from gpuimages.build.render import render_all
from gpuimages.core.errors import UserInputError

from .conftest import CPU_VARIANT, TEST_NAMESPACE, TEST_REPOSITORY


def run_in(client, image: str, command: list[str]) -> tuple[int, str]:
    # The start-up check would warn about Docker's 64 MiB /dev/shm on stderr (which logs()
    # mixes in): these tests are about what the build put in the image.
    container = client.containers.run(
        image, command, detach=True, environment={"GPUIMAGES_QUIET": "1"}
    )
    try:
        status = container.wait(timeout=300)
        return status["StatusCode"], container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_torch_imports_with_expected_version(client, cpu_build):
    code, out = run_in(
        client,
        cpu_build["image_id"],
        ["python", "-c", "import torch, sys; print(torch.__version__, sys.version)"],
    )
    assert code == 0, out
    assert out.startswith("2.13.0+cpu 3.11."), out


def test_labels_tell_what_is_inside(client, cpu_build):
    labels = client.images.get(cpu_build["image_id"]).labels
    assert labels["io.gpuimages.torch"] == "2.13.0"
    assert labels["io.gpuimages.cuda"] == "cpu"
    assert labels["io.gpuimages.python"] == "3.11"
    assert labels["io.gpuimages.variant"] == CPU_VARIANT
    assert labels["org.opencontainers.image.version"] == CPU_VARIANT
    assert labels["org.opencontainers.image.created"].endswith("+00:00")
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert cpu_build["tags"] == [f"{TEST_REPOSITORY}:{CPU_VARIANT}"]
    assert client.images.get(cpu_build["tags"][0]).id == cpu_build["image_id"]


def test_runtime_image_has_no_compiler_no_caches_no_wheelhouse(client, cpu_build):
    script = (
        "for c in gcc g++ cc c++ make; do command -v $c && exit 1; done; "
        "test ! -e /root/.cache/pip || exit 2; "
        'test -z "$(ls -A /wheelhouse 2>/dev/null)" || exit 3; '
        'test -z "$(ls -A /var/cache/apt/archives 2>/dev/null | grep deb)" || exit 4; '
        'test -z "$(ls -A /run/secrets 2>/dev/null)" || exit 5; '
        "id trainer >/dev/null || exit 6; echo clean"
    )
    code, out = run_in(client, cpu_build["image_id"], ["bash", "-c", script])
    assert code == 0 and "clean" in out, (code, out)


def test_report_has_size_and_log(cpu_build):
    assert cpu_build["size_bytes"] > 500_000_000
    assert cpu_build["log_path"].endswith(f"{CPU_VARIANT}.log")
    assert cpu_build["layers"], "per-layer breakdown"


@pytest.fixture
def scratch_variant(matrix, tmp_path):
    """The CPU variant under a throwaway repository, rendered into a temp dockerfiles/."""
    base = matrix.by_name()[CPU_VARIANT]
    variant = replace(base, repository=f"{TEST_NAMESPACE}/scratch")
    out = tmp_path / "dockerfiles"
    render_all((variant,), out)
    return variant, out


def test_missing_torch_wheel_refused_before_any_build(
    docker_cli, local_base, tmp_path, scratch_variant
):
    variant, dockerfiles = scratch_variant
    empty = tmp_path / "empty-wheelhouse"
    empty.mkdir()
    sources = PackageSources(
        base_image=local_base, builder_image=local_base, wheelhouse=empty, offline=True
    )
    with pytest.raises(UserInputError, match=r"torch==2\.13\.0\+cpu \(CPU build"):
        build_many((variant,), docker_cli, sources, dockerfiles=dockerfiles, work_dir=tmp_path)
    assert not (tmp_path / "logs").exists()  # refused before docker build ran


def test_failed_build_names_step_and_leaves_no_tag(
    client, docker_cli, local_base, tmp_path, scratch_variant, cpu_build, wheelhouse
):
    variant, dockerfiles = scratch_variant
    client.images.get(cpu_build["image_id"]).tag(*variant.tag.split(":"))  # a stale tag
    # The pinned torch wheel is there (the pre-build check passes), its dependencies are
    # not: pip fails inside the build.
    partial = tmp_path / "partial-wheelhouse"
    partial.mkdir()
    for wheel in wheelhouse.glob("torch-2.13.0+cpu-*.whl"):
        (partial / wheel.name).hardlink_to(wheel)
    sources = PackageSources(
        base_image=local_base, builder_image=local_base, wheelhouse=partial, offline=True
    )
    [result] = build_many(
        (variant,), docker_cli, sources, dockerfiles=dockerfiles, work_dir=tmp_path / "work"
    )
    assert result.status == "failed"
    assert "pip-install.sh" in (result.failed_step or ""), result.failed_step
    assert "No matching distribution" in result.error or "Could not find" in result.error
    assert not client.images.list(name=variant.tag), "stale tag must be removed"


def test_a_build_that_runs_out_of_space_says_how_to_make_room(
    client, docker_cli, local_base, tmp_path, scratch_variant
):
    variant, dockerfiles = scratch_variant
    # A real ENOSPC without filling the host's disk: a build step's /dev/shm is a 64 MiB
    # tmpfs, and dd writes past it.
    (dockerfiles / variant.name / "Dockerfile").write_text(
        "ARG BASE_IMAGE\n"
        f"FROM ${{BASE_IMAGE}} AS {variant.flavor}\n"
        "RUN dd if=/dev/zero of=/dev/shm/fill bs=1M count=100\n"
    )
    sources = PackageSources(base_image=local_base, builder_image=local_base)
    [result] = build_many(
        (variant,), docker_cli, sources, dockerfiles=dockerfiles, work_dir=tmp_path / "work"
    )
    assert result.status == "failed"
    assert "No space left on device" in result.log_path.read_text()
    assert "The build ran out of disk" in result.error
    assert "docker builder prune --keep-storage 15GB" in result.error
    assert "data root" in result.error and "GB free" in result.error
    assert not client.images.list(name=variant.tag)


def test_over_budget_build_fails_with_layer_breakdown(
    client, docker_cli, local_base, tmp_path, scratch_variant, wheelhouse
):
    variant, dockerfiles = scratch_variant
    variant = replace(variant, size_budget_mb=100)
    sources = PackageSources(
        base_image=local_base, builder_image=local_base, wheelhouse=wheelhouse, offline=True
    )
    [result] = build_many(
        (variant,), docker_cli, sources, dockerfiles=dockerfiles, work_dir=tmp_path / "work"
    )
    assert result.status == "over-budget"
    assert "over its size budget of 100 MB" in result.error
    assert "COPY" in result.error and "MB" in result.error  # the per-layer lines
    assert not client.images.list(name=variant.tag)
    assert "The image was removed" in result.error
    with pytest.raises(docker.errors.ImageNotFound):  # not left behind untagged
        client.images.get(result.image_id)


def test_ca_bundle_is_a_secret_not_a_layer(
    client, docker_cli, local_base, tmp_path, scratch_variant, wheelhouse
):
    variant, dockerfiles = scratch_variant
    bundle = tmp_path / "corp-ca.pem"
    marker = "GPUIMAGES-TEST-CA-MARKER-7f3a"
    bundle.write_text(f"# {marker}\n")
    sources = PackageSources(
        base_image=local_base,
        builder_image=local_base,
        wheelhouse=wheelhouse,
        offline=True,
        ca_bundle=bundle,
    )
    [result] = build_many(
        (variant,), docker_cli, sources, dockerfiles=dockerfiles, work_dir=tmp_path / "work"
    )
    assert result.status == "built", result.error
    history = client.api.history(result.image_id)
    assert marker not in str(history)
    assert marker not in str(client.images.get(result.image_id).attrs)
    _code, out = run_in(
        client,
        result.image_id,
        [
            "bash",
            "-c",
            f"grep -rl {marker} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; echo done",
        ],
    )
    assert out.strip() == "done", out
    client.images.remove(variant.tag, noprune=True)


def test_tag_adds_registry_prefix_and_aliases(client, cpu_build):
    from .conftest import invoke

    r = invoke(
        "tag", "--variant", CPU_VARIANT, "--registry", "127.0.0.1:5999/team", "--alias", "latest"
    )
    assert r.returncode == 0, r.stderr
    wanted = [
        f"127.0.0.1:5999/team/{TEST_REPOSITORY}:{CPU_VARIANT}",
        f"{TEST_REPOSITORY}:latest",
        f"127.0.0.1:5999/team/{TEST_REPOSITORY}:latest",
    ]
    try:
        for tag in wanted:
            assert client.images.get(tag).id == cpu_build["image_id"], tag
    finally:
        for tag in wanted:
            client.images.remove(tag, noprune=True)
    bad = invoke("tag", "--variant", CPU_VARIANT, "--alias", "a:b")
    assert bad.returncode == 2 and "alias 'a:b' is not a tag name" in bad.stderr
