"""The registry cache flags per docker client, and what the build report says."""

from __future__ import annotations

import pytest

from gpuimages.build.buildcache import BuildCache
from gpuimages.build.engine import DockerCli
from gpuimages.build.image import BuildResult, cache_flags
from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import VariantRequest, resolve

CLASSIC = DockerCli("/usr/bin/docker", buildx=False)
BUILDX = DockerCli("/usr/local/bin/docker", buildx=True)
REF = "127.0.0.1:5000/staging/gpuimages/pytorch:{variant}"


@pytest.fixture
def cpu(compat):
    return resolve(VariantRequest(torch="2.13.0", cuda="cpu"), compat)


def test_pre23_client_uses_the_inline_cache(cpu):
    cache = BuildCache.from_options(REF, REF)
    argv, report = cache_flags(cache, CLASSIC, cpu)
    ref = f"127.0.0.1:5000/staging/gpuimages/pytorch:{cpu.name}"
    assert argv == ["--build-arg", "BUILDKIT_INLINE_CACHE=1", "--cache-from", ref]
    assert report["kind"] == "inline" and report["to"] == ref and report["from"] == ref
    assert "no --cache-to" in report["note"]


def test_buildx_writes_a_registry_cache_with_mode_max(cpu):
    cache = BuildCache.from_options(REF, REF)
    argv, report = cache_flags(cache, BUILDX, cpu)
    ref = f"127.0.0.1:5000/staging/gpuimages/pytorch:{cpu.name}"
    assert argv == [
        "--cache-to",
        f"type=registry,ref={ref},mode=max",
        "--cache-from",
        f"type=registry,ref={ref}",
    ]
    assert report["kind"] == "registry"


def test_cache_from_alone_and_no_cache(cpu):
    argv, report = cache_flags(BuildCache.from_options(None, "reg/x:1"), CLASSIC, cpu)
    assert argv == ["--cache-from", "reg/x:1"] and report["note"] is None
    assert BuildCache.from_options(None, None) is None
    assert cache_flags(None, CLASSIC, cpu) == ([], None)


def test_the_report_row_carries_the_cache(cpu):
    _, report = cache_flags(BuildCache.from_options(REF, None), CLASSIC, cpu)
    row = BuildResult(cpu, "built", cache=report).as_dict()
    assert row["cache"]["kind"] == "inline"


@pytest.mark.parametrize(
    "ref",
    ["https://reg/x:1", "reg/x:1,mode=max", "user:pw@reg/x:1", "reg/x 1", "type=registry,ref=x"],
)
def test_bad_references_are_refused(ref):
    with pytest.raises(UserInputError, match="--cache-to"):
        BuildCache.from_options(ref, None)


def test_a_digest_reference_is_fine():
    cache = BuildCache.from_options(None, "reg:5000/a/b@sha256:" + "0" * 64)
    assert cache.cache_from.endswith("0" * 64)
