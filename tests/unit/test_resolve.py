"""`invoke resolve`: which variants fit a driver and GPUs, in what order, and why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.compat import load_compat
from gpuimages.facts.matrix import load_matrix
from gpuimages.host.resolve import (
    HostRequest,
    check_filters,
    failure,
    gpu_archs,
    host_request,
    resolve_host,
    torch_matches,
)
from gpuimages.release.catalog import PublishedImage
from tests.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
CUDA13 = "2.14.1-cuda13.0-cudnn9-runtime"


@pytest.fixture(scope="module")
def variants():
    return load_matrix(ROOT / "matrix.yaml").variants


def resolved(variants, driver, archs=(), catalog=None, **filters):
    return resolve_host(variants, HostRequest(driver, archs, **filters), load_compat(), catalog)


def names(candidates):
    return [c.variant.name for c in candidates]


def reasons(resolution, name):
    return next(c.reasons for c in resolution.others if c.variant.name == name)


def published(name: str) -> PublishedImage:
    ref = f"reg.example:5000/team/pytorch:{name}"
    digest = "sha256:" + "ab" * 32
    return PublishedImage(
        name, ref, digest, f"reg.example:5000/team/pytorch@{digest}", "2026", Path("c.json")
    )


def test_supported_before_minor_compat_then_newest_torch_then_runtime_first(variants):
    r = resolved(variants, "535.104.05", ("sm_90",))
    assert names(r.fits) == [
        "2.3.1-cuda12.1-cudnn8-runtime",
        "2.3.1-cuda12.1-cudnn8-devel",
        "2.1.2-cuda11.8-cudnn8-runtime",
        "2.1.2-cuda11.8-cudnn8-runtime-horovod0.28.1",
        "2.1.2-cuda11.8-cudnn8-devel",
        "2.5.1-cuda12.4-cudnn9-runtime",  # newer torch, but only under minor-version compat
        "2.5.1-cuda12.4-cudnn9-devel",
    ]
    assert {c.policy for c in r.fits[:5]} == {"supported"}
    minor = r.fits[5]
    assert minor.policy == "minor-version compatibility" and minor.start_refused
    assert any("NVIDIA_DISABLE_REQUIRE=1" in n for n in minor.notes)
    assert r.best.variant.name == "2.3.1-cuda12.1-cudnn8-runtime" and r.exit_code == 0


def test_newest_cuda_first_among_the_same_torch(variants):
    r = resolved(variants, "470.82.01", ("sm_80",), torch="1.12")
    # 1.12.0 on 11.6 needs 510 for full support: 11.3 (465) is supported, 11.6 minor compat.
    assert names(r.fits)[:2] == [
        "1.12.0-cuda11.3-cudnn8-runtime",
        "1.12.0-cuda11.3-cudnn8-runtime-horovod0.28.1",
    ]
    assert [c.policy for c in r.fits][-1] == "minor-version compatibility"


def test_flavor_filter_keeps_only_that_flavor_and_says_so_for_the_rest(variants):
    r = resolved(variants, "535.104.05", ("sm_90",), flavor="devel")
    assert {c.variant.flavor for c in r.fits} == {"devel"}
    assert "runtime is not --flavor devel" in reasons(r, "2.3.1-cuda12.1-cudnn8-runtime")


def test_every_reason_is_given_with_the_minimum_driver(variants):
    r = resolved(variants, "450.80.02", ("sm_35",))
    assert not r.fits and r.exit_code == 1
    why = reasons(r, CUDA13)
    assert why[0] == (
        "driver 450.80.02 is too old for CUDA 13.0 under every policy: it needs >= 580.65.06 "
        "(supported) or >= 580 under minor-version compatibility"
    )
    assert why[1] == "GPU sm_35 is not in the image's archs (sm_75 sm_80 sm_86 sm_90 sm_100 sm_120)"
    assert reasons(r, "2.13.0-cpu-runtime") == (
        "CPU build: runs on any host but does not use its GPUs",
    )
    assert "no variant of the matrix fits driver 450.80.02 and GPU sm_35" in failure(r)


def test_cuda_10_2_has_no_minor_version_compatibility(variants):
    r = resolved(variants, "418.39", ("sm_70",))
    why = reasons(r, "1.12.0-cuda10.2-cudnn7-runtime")
    assert why == (
        "driver 418.39 is too old for CUDA 10.2 under every policy: it needs >= 440.33 "
        "(supported) and CUDA 10.2 has no minor-version compatibility",
    )
    assert "440.33 (nvidia-driver-440)" in failure(r)


def test_a_mixed_host_needs_every_gpu_in_the_image(variants):
    r = resolved(variants, "580.65.06", ("sm_120", "sm_80"))
    assert {c.variant.cuda for c in r.fits} == {"13.0"}
    assert reasons(r, "2.5.1-cuda12.4-cudnn9-runtime") == (
        "GPU sm_120 is not in the image's archs (sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90)",
    )
    assert "GPUs sm_120, sm_80 are not" in reasons(r, "1.12.0-cuda10.2-cudnn7-runtime")[0]


def test_binary_compatible_gpu_fits_after_native_with_a_note(variants):
    r = resolved(variants, "580.65.06", ("sm_89",), torch="2.14")
    [first, *_] = r.fits
    assert first.arch == "binary-compatible"
    assert any("sm_89 runs the wheel's sm_86 kernels" in n for n in first.notes)


def test_without_gpu_arch_the_gpu_is_not_judged(variants):
    r = resolved(variants, "580.65.06")
    assert r.fits and all(c.arch == "unknown" for c in r.fits)
    assert any("GPU not judged" in n for n in r.fits[0].notes)


def test_with_a_catalog_published_first_and_the_rest_marked(variants):
    catalog = {"2.1.2-cuda11.8-cudnn8-devel": published("2.1.2-cuda11.8-cudnn8-devel")}
    r = resolved(variants, "535.104.05", ("sm_90",), catalog=catalog)
    assert r.fits[0].variant.name == "2.1.2-cuda11.8-cudnn8-devel"
    assert r.best.published.pull.endswith("@sha256:" + "ab" * 32)
    assert all(c.published is None for c in r.fits[1:])
    doc = r.as_dict()
    assert doc["catalog"] is True and doc["best"] == "2.1.2-cuda11.8-cudnn8-devel"
    assert doc["fits"][1]["published"] is None


def test_with_a_catalog_that_has_none_of_the_fits_it_is_exit_1(variants):
    catalog = {CUDA13: published(CUDA13), "9.9.9-gone": published("9.9.9-gone")}
    r = resolved(variants, "535.104.05", ("sm_90",), catalog=catalog)
    assert r.fits and r.best is None and r.exit_code == 1
    assert "no published image fits driver 535.104.05" in failure(r)
    assert "in the catalog but not in the matrix (not judged): 9.9.9-gone" in r.notes[0]


def test_torch_prefix_matches_whole_parts():
    assert torch_matches("2.5", "2.5.1") and torch_matches("2", "2.13.0")
    assert not torch_matches("2.1", "2.13.0") and not torch_matches("2.5.1", "2.5.10")


def test_gpu_arch_options_repeat_or_comma_and_normalize():
    assert gpu_archs(["sm_90,8.6", "86", " 9.0 "]) == ("sm_90", "sm_86")
    assert gpu_archs("8.0") == ("sm_80",) and gpu_archs(None) == ()
    with pytest.raises(UserInputError, match="'sm_x' is not a compute capability"):
        gpu_archs(["sm_x"])


def test_host_request_checks_the_driver():
    assert host_request("535.104.05", "9.0").gpu_archs == ("sm_90",)
    with pytest.raises(UserInputError, match="'abc' is not an NVIDIA driver version"):
        host_request("abc", None)


@pytest.mark.parametrize(
    ("filters", "words"),
    [
        ({"torch": "3.1"}, "--torch '3.1' matches no variant of m.yaml: it has torch 1.12.0"),
        ({"torch": "2.5; rm"}, "matches no variant"),
        ({"python": "3.99"}, "--python '3.99' is not a Python of m.yaml's variants: 3.8, 3.10"),
        ({"flavor": "slim"}, "--flavor 'slim' is not a flavor: runtime, devel."),
    ],
)
def test_filters_are_refused_naming_the_valid_values(variants, filters, words):
    full = {"torch": None, "python": None, "flavor": None, **filters}
    with pytest.raises(UserInputError) as exc:
        check_filters(variants, matrix="m.yaml", **full)
    assert words in str(exc.value)


def test_cli_json_best_first_and_exit_codes(tmp_path):
    r = invoke("resolve", "--driver", "535.104.05", "--gpu-arch", "sm_90", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["best"] == "2.3.1-cuda12.1-cudnn8-runtime"
    assert doc["fits"][0]["policy"] == "supported" and doc["fits"][0]["published"] is None
    assert any("too old for CUDA 13.0" in x for o in doc["others"] for x in o["reasons"])

    r = invoke("resolve", "--driver", "450.80.02", "--gpu-arch", "3.5")
    assert r.returncode == 1 and "error: no variant of the matrix fits" in r.stderr
    assert "Does not fit" in r.stdout and "Traceback" not in r.stderr

    r = invoke("resolve", "--driver", "535.104.05", "--catalog", str(tmp_path / "none.json"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_names_the_published_digest_from_a_catalog(tmp_path):
    digest = "sha256:" + "cd" * 32
    name = "2.3.1-cuda12.1-cudnn8-devel"
    catalog = {
        "schema": 1,
        "kind": "gpuimages-catalog",
        "created": "2026-11-23T10:00:00+00:00",
        "images": [
            {
                "variant": name,
                "reference": f"reg.example/ml/pytorch:{name}",
                "digest": digest,
                "pull": f"reg.example/ml/pytorch@{digest}",
            }
        ],
    }
    release = tmp_path / "release" / "20261123T100000Z"
    release.mkdir(parents=True)
    (release / "catalog.json").write_text(json.dumps(catalog))
    r = invoke(
        "resolve", "--driver", "535.104.05", "--gpu-arch", "sm_90,sm_80", "--catalog",
        str(tmp_path / "release"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"best: reg.example/ml/pytorch@{digest}" in r.stdout
    assert "not published" in r.stdout


def test_a_host_without_a_gpu_fits_the_cpu_builds_only(variants):
    r = resolved(variants, None)
    assert {c.variant.cuda for c in r.fits} == {"cpu"}
    assert names(r.fits)[0] == "2.13.0-cpu-runtime" and r.fits[0].policy == "no GPU needed"
    assert reasons(r, CUDA13) == ("needs an NVIDIA GPU and driver >= 580.65.06",)
    assert host_request("none", None).driver is None
    with pytest.raises(UserInputError, match="--driver none asks about a host without"):
        host_request("None", ["sm_90"])
