"""Python as its own choice (issue 23): which OS and which Python source a request gets.

The facts come from the shipped compat.yaml: torch's Python tags per build, the OS
archives' Pythons and glibc, and python-build-standalone's range and glibc floor.
"""

from __future__ import annotations

import dataclasses

import pytest

from gpuimages.build.render import context_for
from gpuimages.core.errors import UserInputError
from gpuimages.facts.compat import load_compat
from gpuimages.facts.variant import VariantRequest, normalize_python, resolve


@pytest.fixture(scope="module")
def compat():
    return load_compat()


def choose(compat, **kwargs):
    return resolve(VariantRequest(**kwargs), compat)


def refusal(compat, **kwargs) -> str:
    with pytest.raises(UserInputError) as err:
        choose(compat, **kwargs)
    return str(err.value)


# --- the examples: "yes, here is how" ---


def test_python_3_14_for_2_9_1_cu128_comes_standalone(compat):
    # [COG] 2.9.1 cu128 has cp314 wheels; no OS archive modelled carries 3.14.
    v = choose(compat, torch="2.9.1", cuda="12.8", python="3.14")
    assert (v.python, v.python_source, v.uv) == ("3.14", "standalone", compat.python_standalone.uv)
    # the build's default OS, as without --python (NVIDIA's newest for 12.8)
    assert v.os == choose(compat, torch="2.9.1", cuda="12.8").os
    assert "python-build-standalone" in v.python_why and "glibc" in v.python_why


def test_python_3_7_for_1_12_1_cu116_comes_from_bionic_apt(compat):
    # uv has no 3.7 downloads (uv#13022); ubuntu18.04's archive has python3.7.
    v = choose(compat, torch="1.12.1", cuda="11.6", python="3.7")
    assert (v.os, v.python, v.python_source, v.uv) == ("ubuntu18.04", "3.7", "apt", None)
    assert v.base_image == "ubuntu:18.04"
    assert "apt" in v.python_why


def test_python_3_13_for_2_5_1_cu124_once_the_data_records_cp313(compat):
    # PyPI's torch 2.5.1 has cp313 manylinux1 wheels (the cu124 build); the torch section
    # is issue 23b's audit. With the tag recorded, the answer is debian13's own 3.13.
    release = compat.torch["2.5.1"]
    builds = {**release.build_python, "12.4": (*release.build_python["12.4"], "3.13")}
    patched = dataclasses.replace(
        compat,
        torch={**compat.torch, "2.5.1": dataclasses.replace(release, build_python=builds)},
    )
    v = choose(patched, torch="2.5.1", cuda="12.4", python="3.13")
    assert (v.os, v.python, v.python_source) == ("debian13", "3.13", "apt")


def test_python_3_13_picks_trixie_for_2_14_1_cu130(compat):
    v = choose(compat, torch="2.14.1", cuda="13.0", python="3.13")
    assert (v.os, v.python_source, v.base_image) == ("debian13", "apt", "debian:trixie-slim")
    assert "glibc 2.41 meets the wheel's floor (glibc 2.28)" in v.python_why


# --- clear no's ---


def test_a_python_torch_never_shipped_names_what_it_did(compat):
    msg = refusal(compat, torch="1.12.1", cuda="11.6", python="3.12")
    assert "never shipped a wheel for Python 3.12" in msg
    assert "3.7, 3.8, 3.9, 3.10" in msg and "Nearest: 3.10" in msg


def test_the_python_check_comes_before_the_os(compat):
    # an OS that could never work is not what the user hears about first
    msg = refusal(compat, torch="1.12.1", cuda="11.6", python="3.12", os="nosuchos")
    assert "never shipped a wheel for Python 3.12" in msg


def test_an_os_that_cannot_carry_the_python_is_refused_naming_those_that_can(compat):
    msg = refusal(compat, torch="1.12.1", cuda="11.6", python="3.7", os="debian12")
    assert "Python 3.7 cannot be had on debian12" in msg
    assert "apt: --os ubuntu18.04" in msg
    assert "python-build-standalone (via uv) has Python 3.8-" in msg


def test_python_source_apt_refuses_where_only_standalone_fits(compat):
    msg = refusal(compat, torch="2.9.1", cuda="cpu", python="3.14", python_source="apt")
    assert "Python 3.14 cannot be had" in msg and "--python-source standalone" in msg


def test_unknown_python_source_is_refused_with_the_choices(compat):
    msg = refusal(compat, torch="2.13.0", cuda="cpu", python_source="conda")
    assert "python_source 'conda' is not valid" in msg and "apt, standalone" in msg


# --- --os stays the user's override ---


def test_os_given_with_a_python_its_archive_lacks_gets_standalone(compat):
    v = choose(compat, torch="2.13.0", cuda="cpu", python="3.12", os="debian12")
    assert (v.os, v.python, v.python_source) == ("debian12", "3.12", "standalone")


def test_os_given_with_its_own_python_stays_apt(compat):
    v = choose(compat, torch="2.13.0", cuda="cpu", python="3.11", os="debian12")
    assert (v.os, v.python_source, v.uv) == ("debian12", "apt", None)


def test_apt_is_preferred_over_standalone_without_os(compat):
    # 3.12 is ubuntu24.04's own: no standalone Python when an archive fits
    v = choose(compat, torch="2.13.0", cuda="cpu", python="3.12")
    assert (v.os, v.python_source) == ("ubuntu24.04", "apt")


def test_python_source_standalone_keeps_the_default_os(compat):
    v = choose(compat, torch="2.13.0", cuda="cpu", python="3.11", python_source="standalone")
    assert (v.os, v.python_source) == ("debian12", "standalone")


def test_os_whose_archive_python_torch_dropped_gets_a_standalone_one(compat):
    # ubuntu20.04 offers 3.8/3.9; torch 2.9.1 needs >= 3.10: the newest both support
    v = choose(compat, torch="2.9.1", cuda="12.8", os="ubuntu20.04")
    assert (v.python, v.python_source) == ("3.14", "standalone")


def test_glibc_floor_still_refuses_an_old_os(compat):
    # torch >= 2.6 wheels are manylinux_2_28; bionic has glibc 2.27
    msg = refusal(compat, torch="2.9.1", cuda="cpu", python="3.8", os="ubuntu18.04")
    assert "never shipped a wheel for Python 3.8" in msg
    msg = refusal(compat, torch="2.9.1", cuda="cpu", os="ubuntu18.04")
    assert "glibc >= 2.28" in msg and "ubuntu18.04 has glibc 2.27" in msg


def test_end_of_life_bionic_is_never_a_default(compat):
    # CUDA 10.2's only nvidia/cuda OS is ubuntu18.04; the os route keeps a supported one
    v = choose(compat, torch="1.12.0", cuda="10.2")
    assert v.os != "ubuntu18.04" and v.python_source == "apt"


def test_defaults_are_unchanged_without_python(compat):
    v = choose(compat, torch="2.13.0", cuda="cpu")
    assert (v.os, v.python, v.python_source) == ("debian12", "3.11", "apt")
    assert "debian12" in v.python_why


@pytest.mark.parametrize(
    ("given", "want"),
    [("3.12", "3.12"), ("3.12.4", "3.12"), ("py3.12", "3.12"), ("cp312", "3.12"), ("37", "3.7")],
)
def test_python_spellings(given, want):
    assert normalize_python(given) == want


def test_every_shipped_python_has_an_answer(compat):
    """Each torch release x build x shipped Python resolves, or is refused naming a way."""
    for version, release in compat.torch.items():
        for build in release.builds():
            for python in release.pythons(build):
                try:
                    v = choose(compat, torch=version, cuda=build, python=python)
                except UserInputError as err:
                    # only Pythons no source carries here (3.6/3.7 where glibc or OS lacks)
                    assert "cannot be had" in str(err) or "nvidia" in str(err), (
                        version,
                        build,
                        python,
                        str(err),
                    )
                    continue
                assert v.python == python
                assert v.python_source in ("apt", "standalone")


# --- what the Dockerfile gets ---


def test_standalone_render_has_no_os_python_and_copies_opt_python(compat):
    v = choose(compat, torch="2.9.1", cuda="cpu", python="3.14", torchvision="none")
    ctx = context_for(v)
    assert ctx.uv == compat.python_standalone.uv and ctx.python_home == "/opt/python"
    assert ctx.python_commands == (
        f"/opt/gpuimages/build/python-standalone.sh 3.14 {compat.python_standalone.uv}",
    )
    assert not any(p.startswith("python3") for p in ctx.runtime_apt)
    assert "python3.14" not in ctx.builder_apt  # the OS's python3 only runs pip for uv


def test_apt_render_is_as_before(compat):
    ctx = context_for(choose(compat, torch="2.13.0", cuda="cpu", torchvision="none"))
    assert ctx.uv is None and ctx.python_home is None and ctx.python_commands == ()
    assert "python3.11" in ctx.runtime_apt


def test_standalone_devel_takes_headers_from_the_standalone_python(compat):
    v = choose(compat, torch="2.9.1", cuda="cpu", python="3.14", flavor="devel")
    assert not any(p.endswith("-dev") and p.startswith("python") for p in context_for(v).devel_apt)


def test_labels_and_smoke_env_name_the_source(compat):
    v = choose(compat, torch="2.9.1", cuda="cpu", python="3.14")
    assert v.labels()["io.gpuimages.python-source"] == "standalone"
    assert v.smoke_env()["GPUIMAGES_PYTHON_SOURCE"] == "standalone"


def test_smoke_tells_the_source_from_where_python_lives(compat):
    from gpuimages.vet.smoke import labels_check

    v = choose(compat, torch="2.9.1", cuda="cpu", python="3.14", torchvision="none")
    found = {"torch": "2.9.1+cpu", "python": "3.14.0", "torchvision": None}
    ok = labels_check(v, v.labels(), {**found, "python_prefix": "/opt/python/cpython-3.14.0"})
    assert ok.status == "passed" and "python_source" in ok.figures["compared"]
    lied = labels_check(v, v.labels(), {**found, "python_prefix": "/usr"})
    assert lied.status == "failed" and "python_source 'apt'" in lied.reason


def test_offline_standalone_build_names_what_the_wheelhouse_lacks(compat, tmp_path):
    from gpuimages.build.wheelcheck import missing_standalone

    v = choose(compat, torch="2.9.1", cuda="cpu", python="3.14", torchvision="none")
    missing = missing_standalone(v, tmp_path)
    assert len(missing) == 2 and f"uv=={v.uv}" in missing[0] and "cpython-3.14." in missing[1]
    (tmp_path / f"uv-{v.uv}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl").touch()
    archive = "cpython-3.14.10+20261110-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz"
    (tmp_path / archive).touch()
    assert missing_standalone(v, tmp_path) == []
    apt = choose(compat, torch="2.13.0", cuda="cpu", torchvision="none")
    assert missing_standalone(apt, tmp_path / "nowhere") == []


def test_torch_and_python_without_cuda_gets_the_no_before_the_missing_option(compat):
    from gpuimages.facts.select import Selection

    with pytest.raises(UserInputError) as err:
        Selection(axes={"torch": "1.12.1", "python": "3.12"}).request(compat)
    msg = str(err.value)
    assert "--cuda is required" in msg
    assert "never shipped a wheel for Python 3.12 in any build" in msg and "3.7, 3.8" in msg
    with pytest.raises(UserInputError) as err:
        Selection(axes={"torch": "1.12.1", "python": "py3.8"}).request(compat)
    assert "Python 3.8 wheels for --cuda 10.2, 11.3, 11.6, cpu" in str(err.value)


def test_local_base_follows_the_chosen_debian(compat):
    from gpuimages.build.engine import LOCAL_BASES, check_local_base

    trixie = choose(compat, torch="2.14.1", cuda="13.0", python="3.13")
    bookworm = choose(compat, torch="2.13.0", cuda="cpu")
    assert check_local_base((trixie,)) == "debian13"
    assert LOCAL_BASES["debian13"] == ("gpuimages-local/debian:trixie", "trixie")
    assert check_local_base((bookworm,)) == "debian12"
    with pytest.raises(UserInputError, match="one call per OS"):
        check_local_base((trixie, bookworm))
    noble = choose(compat, torch="2.9.1", cuda="12.8", python="3.14")
    with pytest.raises(UserInputError, match=r"not: 2\.9\.1-cuda12\.8"):
        check_local_base((noble,))
