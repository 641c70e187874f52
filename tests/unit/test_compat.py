"""Combinations checked against the sources named in gpuimages/data/compat.yaml.

Valid rows are pip commands that exist on PyTorch's "previous versions" page [PV] or
images that exist on Docker Hub as pytorch/pytorch tags; invalid rows are combinations
those pages do not offer.
"""

from __future__ import annotations

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import VariantRequest, normalize_cuda, resolve

# (request kwargs, expected name, base image, python) - each a published build.
VALID = [
    # [PV] v1.12.0: pip install torch==1.12.0+cu102/cu113/cu116
    (
        {"torch": "1.12.0", "cuda": "10.2"},
        "1.12.0-cuda10.2-cudnn7-runtime",
        "ubuntu:22.04",  # os route: NVIDIA deleted the 10.2 tags; torch bundles its CUDA
        "3.10",
    ),
    (
        {"base": "nvidia", "torch": "1.12.0", "cuda": "11.3"},
        "1.12.0-cuda11.3-cudnn8-runtime",
        "nvidia/cuda:11.3.1-cudnn8-runtime-ubuntu20.04",
        "3.8",
    ),
    (
        {"torch": "1.12.0", "cuda": "cu116", "flavor": "devel"},
        "1.12.0-cuda11.6-cudnn8-devel",
        "nvidia/cuda:11.6.2-cudnn8-devel-ubuntu20.04",
        "3.8",
    ),
    ({"torch": "1.12.0", "cuda": "cpu"}, "1.12.0-cpu-runtime", "ubuntu:22.04", "3.10"),
    (
        {"base": "nvidia", "torch": "1.12.1", "cuda": "11.3", "python": "3.9"},
        "1.12.1-cuda11.3-cudnn8-runtime",
        "nvidia/cuda:11.3.1-cudnn8-runtime-ubuntu20.04",
        "3.9",
    ),
    # [PV] v1.13.1: cu116, cu117
    (
        {"base": "nvidia", "torch": "1.13.1", "cuda": "11.7"},
        "1.13.1-cuda11.7-cudnn8-runtime",
        "nvidia/cuda:11.7.1-cudnn8-runtime-ubuntu22.04",
        "3.10",
    ),
    # [PV] v2.0.1: cu117, cu118; Docker Hub pytorch/pytorch:2.0.1-cuda11.7-cudnn8-runtime
    (
        {"base": "nvidia", "torch": "2.0.1", "cuda": "11.7"},
        "2.0.1-cuda11.7-cudnn8-runtime",
        "nvidia/cuda:11.7.1-cudnn8-runtime-ubuntu22.04",
        "3.10",
    ),
    # Docker Hub pytorch/pytorch:2.1.2-cuda11.8-cudnn8-runtime / -devel
    (
        {"base": "nvidia", "torch": "2.1.2", "cuda": "11.8"},
        "2.1.2-cuda11.8-cudnn8-runtime",
        "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04",
        "3.10",
    ),
    (
        {"torch": "2.1.2", "cuda": "12.1", "flavor": "devel"},
        "2.1.2-cuda12.1-cudnn8-devel",
        "nvidia/cuda:12.1.1-cudnn8-devel-ubuntu22.04",
        "3.10",
    ),
    # Docker Hub pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime
    (
        {"base": "nvidia", "torch": "2.3.1", "cuda": "12.1"},
        "2.3.1-cuda12.1-cudnn8-runtime",
        "nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04",
        "3.10",
    ),
    # Docker Hub pytorch/pytorch:2.4.1-cuda12.4-cudnn9-runtime ([RM] 2.4: cuDNN 9)
    (
        {"base": "nvidia", "torch": "2.4.1", "cuda": "12.4"},
        "2.4.1-cuda12.4-cudnn9-runtime",
        "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
        "3.10",
    ),
    # Docker Hub pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel
    (
        {"torch": "2.5.1", "cuda": "12.4", "flavor": "devel", "python": "3.11"},
        "2.5.1-cuda12.4-cudnn9-devel",
        "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04",
        "3.11",
    ),
    # [PV] v2.4.1 cu118 wheels bring cuDNN 9; nvidia/cuda 11.8 images only carry cuDNN 8,
    # so the plain CUDA image is the base (Docker Hub: pytorch/pytorch:2.4.1-cuda11.8-cudnn9-*)
    (
        {"base": "nvidia", "torch": "2.4.1", "cuda": "11.8"},
        "2.4.1-cuda11.8-cudnn9-runtime",
        "nvidia/cuda:11.8.0-runtime-ubuntu22.04",
        "3.10",
    ),
    # [PV] v2.6.0: cu126; nvidia/cuda 12.6.3 on ubuntu24.04 has Python 3.12
    (
        {"base": "nvidia", "torch": "2.6.0", "cuda": "12.6"},
        "2.6.0-cuda12.6-cudnn9-runtime",
        "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04",
        "3.12",
    ),
    # [PV] v2.7.1: cu128
    (
        {"base": "nvidia", "torch": "2.7.1", "cuda": "12.8"},
        "2.7.1-cuda12.8-cudnn9-runtime",
        "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
        "3.12",
    ),
    # [WHL] torch-2.13.0+cpu for Python 3.11 (Debian 12)
    ({"torch": "2.13.0", "cuda": "cpu"}, "2.13.0-cpu-runtime", "debian:bookworm-slim", "3.11"),
    (
        {"torch": "2.13.0", "cuda": "cpu", "flavor": "devel", "horovod": "0.28.1"},
        "2.13.0-cpu-devel-horovod0.28.1",
        "debian:bookworm-slim",
        "3.11",
    ),
    # [HVD] 0.28.1 against torch 1.12 needs no fix
    (
        {"base": "nvidia", "torch": "1.12.0", "cuda": "11.3", "horovod": "0.28.1"},
        "1.12.0-cuda11.3-cudnn8-runtime-horovod0.28.1",
        "nvidia/cuda:11.3.1-cudnn8-runtime-ubuntu20.04",
        "3.8",
    ),
]

# (request kwargs, words the refusal must contain)
INVALID = [
    # [PV] v1.12.0 lists cu102, cu113, cu116 only
    ({"torch": "1.12.0", "cuda": "12.1"}, ["has CUDA wheels for 10.2, 11.3, 11.6"]),
    ({"torch": "1.12.0", "cuda": "11.7"}, ["10.2, 11.3, 11.6", "Nearest: 11.6"]),
    # [PV] v2.1.2: no cu124 build (first in 2.4)
    ({"torch": "2.1.2", "cuda": "12.4"}, ["11.8, 12.1"]),
    # [PV] v2.8.0 dropped cu118
    ({"torch": "2.8.0", "cuda": "11.8"}, ["12.6, 12.8"]),
    # [RM] 1.12 shipped cuDNN 8, 2.4 cuDNN 9
    ({"torch": "1.12.0", "cuda": "11.3", "cudnn": "7"}, ["cuDNN 8, not cuDNN 7"]),
    ({"torch": "2.4.1", "cuda": "12.4", "cudnn": "8"}, ["cuDNN 9, not cuDNN 8"]),
    # [RM] 1.12: Python <= 3.10
    (
        {"torch": "1.12.0", "cuda": "11.3", "python": "3.11"},
        ["never shipped a wheel for Python 3.11", "3.7, 3.8, 3.9, 3.10"],
    ),
    # [RM] 2.5: Python >= 3.9: refused for the wheels before any OS is looked at
    (
        {"torch": "2.5.1", "cuda": "12.4", "os": "ubuntu20.04", "python": "3.8"},
        ["never shipped a wheel for Python 3.8", "Nearest: 3.9"],
    ),
    # [HVD] #3996: 0.28.0 predates torch 2.1 and has no fix recorded
    ({"torch": "2.1.2", "cuda": "11.8", "horovod": "0.28.0"}, ["does not build against torch"]),
    ({"torch": "1.12.0", "cuda": "11.3", "horovod": "0.19.0"}, ["Horovod 0.19.0", "known: "]),
    # [NCI] CUDA 12.1 images start at ubuntu20.04
    (
        {"torch": "2.1.2", "cuda": "12.1", "os": "ubuntu18.04", "base": "nvidia"},
        ["valid: ubuntu20.04, ubuntu22.04"],
    ),
    ({"torch": "1.12.5", "cuda": "11.3"}, ["not in the compatibility data", "1.12.0"]),
    ({"torch": "2.13.0", "cuda": "cpu", "cudnn": "8"}, ["CPU variants have no cuDNN"]),
    ({"torch": "1.12.0", "cuda": "11.3", "flavor": "runtme"}, ["did you mean 'runtime'"]),
    ({"torch": "1.12.0", "cuda": "11.3", "torchvision": "0.14.0"}, ["Only 'none'"]),
]


@pytest.mark.parametrize(("kwargs", "name", "base", "python"), VALID)
def test_valid_combinations_resolve(compat, kwargs, name, base, python):
    v = resolve(VariantRequest(**kwargs), compat)
    assert v.name == name
    assert v.base_image == base
    assert v.python == python
    assert v.tag == f"gpuimages/pytorch:{name}"


@pytest.mark.parametrize(("kwargs", "words"), INVALID)
def test_invalid_combinations_are_refused_with_reason(compat, kwargs, words):
    with pytest.raises(UserInputError) as err:
        resolve(VariantRequest(**kwargs), compat)
    for word in words:
        assert word in str(err.value)


def test_enough_combinations_are_covered():
    assert len(VALID) + len(INVALID) >= 20


def test_derived_values_for_1_12_cu113(compat):
    v = resolve(VariantRequest(torch="1.12.0", cuda="11.3"), compat)
    assert v.pip_pins == (
        "torch==1.12.0+cu113",
        "torchvision==0.13.0+cu113",
        "torchaudio==0.12.0+cu113",
        "numpy==1.24.4",
    )
    assert v.index_url == "https://download.pytorch.org/whl/cu113"
    assert v.min_driver == "465.19.01"  # [CRN]
    assert v.minor_compat_driver == "450.80.02"
    assert v.require_cuda == "cuda>=11.3"
    assert "sm_86" in v.archs and "sm_90" not in v.archs  # [BLD] cu113
    assert v.eol


def test_horovod_fix_applies_from_torch_2_1(compat):
    old = resolve(VariantRequest(torch="1.12.0", cuda="11.3", horovod="0.28.1"), compat)
    new = resolve(VariantRequest(torch="2.1.2", cuda="11.8", horovod="0.28.1"), compat)
    assert old.horovod_fixes == ()
    assert new.horovod_fixes == ("cxx17",)
    assert new.builder_image == "nvidia/cuda:11.8.0-cudnn8-devel-ubuntu22.04"
    assert new.base_image == "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"


def test_torchvision_none_drops_torchaudio_too(compat):
    v = resolve(VariantRequest(torch="2.13.0", cuda="cpu", torchvision="none"), compat)
    assert v.torchvision is None and v.torchaudio is None
    assert v.pip_pins == ("torch==2.13.0+cpu", "numpy==2.4.1")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("11.3", "11.3"),
        ("cu113", "11.3"),
        ("cuda11.8", "11.8"),
        ("CPU", "cpu"),
        ("cu121", "12.1"),
        ("cu102", "10.2"),
    ],
)
def test_normalize_cuda(raw, want):
    assert normalize_cuda(raw) == want


def test_every_torch_cuda_has_a_cuda_table_entry(compat):
    for release in compat.torch.values():
        for cuda in release.cuda:
            assert cuda in compat.cuda, f"torch {release.version}: CUDA {cuda} missing"


def test_minor_compat_floor_is_below_toolkit_minimum(compat):
    from gpuimages.facts.compat import driver_tuple

    for c in compat.cuda.values():
        if c.minor_compat_driver:
            assert driver_tuple(c.minor_compat_driver) <= driver_tuple(c.min_driver)
