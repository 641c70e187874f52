"""The wheel-availability check on a temporary wheelhouse (file names only)."""

from __future__ import annotations

import pytest

from gpuimages.build.wheelcheck import missing_wheels, refuse_missing
from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import VariantRequest, resolve


@pytest.fixture
def variant(compat):
    return resolve(
        VariantRequest(torch="2.5.1", cuda="12.4", python="3.11", os="ubuntu22.04"), compat
    )


def touch(d, *names):
    for n in names:
        (d / n).write_bytes(b"")


def test_complete_wheelhouse_has_nothing_missing(tmp_path, variant):
    touch(
        tmp_path,
        "torch-2.5.1+cu124-cp311-cp311-linux_x86_64.whl",
        "torchvision-0.20.1+cu124-cp311-cp311-linux_x86_64.whl",
        "torchaudio-2.5.1+cu124-cp311-cp311-linux_x86_64.whl",
    )
    assert missing_wheels(variant, str(tmp_path)) == []


def test_pypi_wheel_without_local_tag_counts(tmp_path, variant):
    touch(
        tmp_path,
        "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl",
        "torchvision-0.20.1-cp311-cp311-manylinux1_x86_64.whl",
        "torchaudio-2.5.1-cp311-cp311-manylinux1_x86_64.whl",
        "torch-2.5.1+cu118-cp311-cp311-linux_x86_64.whl",  # another build: not this one
    )
    assert missing_wheels(variant, str(tmp_path)) == []


def test_wrong_python_and_missing_audio_are_named(tmp_path, variant):
    touch(
        tmp_path,
        "torch-2.5.1+cu124-cp311-cp311-linux_x86_64.whl",
        "torchvision-0.20.1+cu124-cp312-cp312-linux_x86_64.whl",
    )
    missing = missing_wheels(variant, str(tmp_path))
    # PyPI's 2.5.1 is the cu124 build: pinned without a local tag, named with its build.
    assert missing == [
        "torchvision==0.20.1 (CUDA 12.4 build, Python 3.11, linux x86_64)",
        "torchaudio==2.5.1 (CUDA 12.4 build, Python 3.11, linux x86_64)",
    ]
    with pytest.raises(UserInputError, match=r"torchvision==0\.20\.1 \(CUDA 12\.4"):
        refuse_missing(variant, str(tmp_path))
