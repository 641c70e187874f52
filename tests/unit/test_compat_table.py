"""Requests as users type them, with the verdict the published facts give, and the source.

One row per request: what `invoke check` is asked, and either the variant it must resolve
to or words its refusal must contain. The facts are the public record, not compat.yaml:
  [PV]  pytorch.org "Previous PyTorch Versions" (pip commands per release and CUDA)
  [RM]  RELEASE.md in pytorch/pytorch (Python range per release)
  [DES] DESIGN.md "Test environment" (PyPI's default CUDA build per release, measured)
  [I11] issue #11 (cuDNN of the 1.12.x cu102 builds; 2.15.0 on PyPI; CUDA 13 drops Volta)
  [WHL] the wheel's own METADATA (torch-2.14.1: Requires-Python >=3.10, cuda-toolkit 13.0.3)
  [NCI] nvidia/cuda tags (10.2 deleted; no Debian images)
  [HVD] horovod 0.28.x releases, issue #3996
  [PKG] distribution archives (the Python each OS ships)
"""

from __future__ import annotations

import pytest

from gpuimages.core.errors import UserInputError
from gpuimages.facts.variant import VariantRequest, resolve

OK = "ok"
NO = "refused"

# (request, verdict, expected name or refusal words, source)
TABLE = [
    # --- every minor release resolves with a CUDA build it published [PV] --------------
    ({"torch": "1.8.0", "cuda": "10.2"}, OK, "1.8.0-cuda10.2-", "PV v1.8.0 cu102"),
    ({"torch": "1.8.0", "cuda": "11.1"}, OK, "1.8.0-cuda11.1-", "PV v1.8.0 cu111"),
    ({"torch": "1.8.1", "cuda": "10.1"}, OK, "1.8.1-cuda10.1-", "PV v1.8.1 cu101"),
    # builds the audit of 2026-12-06 added (sources in compat.yaml)
    ({"torch": "1.8.0", "cuda": "10.1"}, OK, "1.8.0-cuda10.1-", "GH 1.8.0+cu101"),
    ({"torch": "1.10.0", "cuda": "11.3"}, OK, "1.10.0-cuda11.3-", "GH 1.10.0+cu113"),
    ({"torch": "1.11.0", "cuda": "11.5"}, OK, "1.11.0-cuda11.5-", "GH/BLDR 1.11.0+cu115"),
    ({"torch": "2.13.0", "cuda": "12.9"}, OK, "2.13.0-cuda12.9-", "GH 2.13.0+cu129"),
    ({"torch": "1.11.0", "cuda": "11.6"}, NO, ["10.2, 11.3, 11.5"], "PV/BLDR 1.11: no cu116"),
    ({"torch": "1.9.0", "cuda": "11.1"}, OK, "1.9.0-cuda11.1-", "PV v1.9.0 cu111"),
    ({"torch": "1.9.1", "cuda": "10.2"}, OK, "1.9.1-cuda10.2-", "PV v1.9.1 cu102"),
    ({"torch": "1.10.0", "cuda": "11.1"}, OK, "1.10.0-cuda11.1-", "PV v1.10.0 cu111"),
    ({"torch": "1.10.1", "cuda": "10.2"}, OK, "1.10.1-cuda10.2-", "PV v1.10.1 cu102"),
    ({"torch": "1.11.0", "cuda": "11.3"}, OK, "1.11.0-cuda11.3-", "PV v1.11.0 cu113"),
    ({"torch": "1.12.0", "cuda": "11.6"}, OK, "1.12.0-cuda11.6-cudnn8-", "PV v1.12.0 cu116"),
    ({"torch": "1.12.1", "cuda": "11.3"}, OK, "1.12.1-cuda11.3-cudnn8-", "PV v1.12.1 cu113"),
    ({"torch": "1.13.0", "cuda": "11.7"}, OK, "1.13.0-cuda11.7-", "PV v1.13.0 cu117"),
    ({"torch": "1.13.1", "cuda": "11.6"}, OK, "1.13.1-cuda11.6-", "PV v1.13.1 cu116"),
    ({"torch": "2.0.0", "cuda": "11.8"}, OK, "2.0.0-cuda11.8-", "PV v2.0.0 cu118"),
    ({"torch": "2.0.1", "cuda": "11.7"}, OK, "2.0.1-cuda11.7-", "PV v2.0.1 cu117"),
    ({"torch": "2.1.0", "cuda": "12.1"}, OK, "2.1.0-cuda12.1-", "PV v2.1.0 cu121"),
    ({"torch": "2.1.1", "cuda": "11.8"}, OK, "2.1.1-cuda11.8-", "PV v2.1.1 cu118"),
    ({"torch": "2.2.0", "cuda": "12.1"}, OK, "2.2.0-cuda12.1-", "PV v2.2.0 cu121"),
    ({"torch": "2.2.1", "cuda": "11.8"}, OK, "2.2.1-cuda11.8-", "PV v2.2.1 cu118"),
    ({"torch": "2.2.2", "cuda": "12.1"}, OK, "2.2.2-cuda12.1-", "PV v2.2.2 cu121"),
    ({"torch": "2.3.0", "cuda": "11.8"}, OK, "2.3.0-cuda11.8-", "PV v2.3.0 cu118"),
    ({"torch": "2.4.0", "cuda": "12.4"}, OK, "2.4.0-cuda12.4-cudnn9-", "PV v2.4.0 cu124"),
    ({"torch": "2.4.1", "cuda": "12.1"}, OK, "2.4.1-cuda12.1-cudnn9-", "PV v2.4.1 cu121"),
    ({"torch": "2.5.0", "cuda": "12.4"}, OK, "2.5.0-cuda12.4-cudnn9-", "PV v2.5.0 cu124"),
    ({"torch": "2.5.1", "cuda": "11.8"}, OK, "2.5.1-cuda11.8-cudnn9-", "PV v2.5.1 cu118"),
    ({"torch": "2.6.0", "cuda": "12.6"}, OK, "2.6.0-cuda12.6-cudnn9-", "PV v2.6.0 cu126"),
    ({"torch": "2.7.0", "cuda": "12.8"}, OK, "2.7.0-cuda12.8-cudnn9-", "PV v2.7.0 cu128"),
    ({"torch": "2.7.1", "cuda": "11.8"}, OK, "2.7.1-cuda11.8-cudnn9-", "PV v2.7.1 cu118"),
    ({"torch": "2.8.0", "cuda": "12.9"}, OK, "2.8.0-cuda12.9-cudnn9-", "PV v2.8.0 cu129"),
    ({"torch": "2.9.0", "cuda": "13.0"}, OK, "2.9.0-cuda13.0-cudnn9-", "PV v2.9.0 cu130"),
    ({"torch": "2.9.1", "cuda": "12.8"}, OK, "2.9.1-cuda12.8-cudnn9-", "DES 2.8-2.10 cu128"),
    ({"torch": "2.10.0", "cuda": "12.8"}, OK, "2.10.0-cuda12.8-cudnn9-", "DES 2.8-2.10 cu128"),
    ({"torch": "2.11.0", "cuda": "13.0"}, OK, "2.11.0-cuda13.0-cudnn9-", "DES 2.11-2.14 cu130"),
    ({"torch": "2.12.0", "cuda": "13.0"}, OK, "2.12.0-cuda13.0-cudnn9-", "DES 2.11-2.14 cu130"),
    ({"torch": "2.13.0", "cuda": "13.0"}, OK, "2.13.0-cuda13.0-cudnn9-", "I11 2.13.0 ships 13.0"),
    ({"torch": "2.13.0", "cuda": "13.2"}, OK, "2.13.0-cuda13.2-cudnn9-", "I11 2.13.0 ships 13.2"),
    ({"torch": "2.13.0", "cuda": "12.6"}, OK, "2.13.0-cuda12.6-cudnn9-", "I11 2.13.0 ships 12.6"),
    ({"torch": "2.14.1", "cuda": "13.0"}, OK, "2.14.1-cuda13.0-cudnn9-", "WHL torch-2.14.1"),
    ({"torch": "2.15.0", "cuda": "13.2"}, OK, "2.15.0-cuda13.2-cudnn9-", "I11 2.15.0 cu132"),
    # --- the issue's own example, and other ordinary requests --------------------------
    (
        {"torch": "2.4.0", "cuda": "12.4", "python": "3.12"},
        OK,
        "2.4.0-cuda12.4-cudnn9-runtime",
        "I11: a wheel that exists (cp312 cu124)",
    ),
    ({"torch": "2.14.1", "cuda": "cu130"}, OK, "2.14.1-cuda13.0-", "I11: cu130 means 13.0"),
    ({"torch": "1.12.0", "cuda": "cu113"}, OK, "1.12.0-cuda11.3-", "I11: cu113 means 11.3"),
    ({"torch": "2.5.1", "cuda": "cuda12.4"}, OK, "2.5.1-cuda12.4-", "tag spelling"),
    ({"torch": "2.5.1", "cuda": "12.4.1"}, OK, "2.5.1-cuda12.4-", "a full CUDA version"),
    ({"torch": "2.13.0", "cuda": "cpu"}, OK, "2.13.0-cpu-runtime", "WHL torch-2.13.0+cpu"),
    ({"torch": "2.13.0", "cuda": "CPU"}, OK, "2.13.0-cpu-runtime", "case"),
    ({"torch": "1.12.0", "cuda": "cpu"}, OK, "1.12.0-cpu-runtime", "PV v1.12.0 cpu"),
    # --- Python edges [RM], [PKG] -------------------------------------------------------
    ({"torch": "1.12.0", "cuda": "11.3", "python": "3.10"}, OK, "1.12.0-cuda11.3-", "RM 1.12 <=3.10"),
    ({"torch": "1.12.0", "cuda": "11.3", "python": "3.11"}, NO, ["3.11"], "RM 1.12: <=3.10"),
    # RM says <=3.10, but PyPI's cp311 wheel is the cu117 build (its METADATA, read 2026-12-06)
    ({"torch": "1.13.1", "cuda": "11.7", "python": "3.11"}, OK, "1.13.1-cuda11.7-", "WHL 1.13.1 cp311"),
    ({"torch": "1.13.1", "cuda": "11.6", "python": "3.11"}, NO, ["3.11"], "RM 1.13: <=3.10"),
    ({"torch": "2.5.1", "cuda": "12.4", "python": "3.13"}, OK, "2.5.1-cuda12.4-", "WHL 2.5.1 cp313"),
    ({"torch": "2.0.1", "cuda": "11.8", "python": "3.11"}, OK, "2.0.1-cuda11.8-", "RM 2.0: <=3.11"),
    ({"torch": "2.0.1", "cuda": "11.8", "python": "3.12"}, NO, ["3.12"], "RM 2.0: <=3.11"),
    ({"torch": "2.1.2", "cuda": "12.1", "python": "3.12"}, NO, ["3.12"], "RM 2.1: <=3.11"),
    ({"torch": "2.2.2", "cuda": "12.1", "python": "3.12"}, OK, "2.2.2-cuda12.1-", "PV 2.2 cp312"),
    ({"torch": "2.5.1", "cuda": "12.4", "python": "3.8"}, NO, ["3.8"], "RM 2.5: >=3.9"),
    ({"torch": "2.6.0", "cuda": "12.6", "python": "3.13"}, OK, "2.6.0-cuda12.6-", "RM 2.6: 3.13"),
    ({"torch": "2.9.0", "cuda": "12.8", "python": "3.9"}, NO, ["3.9"], "RM 2.9: >=3.10"),
    ({"torch": "2.14.1", "cuda": "13.0", "python": "3.9"}, NO, ["3.9"], "WHL >=3.10"),
    ({"torch": "2.14.1", "cuda": "13.0", "python": "3.13"}, OK, "2.14.1-cuda13.0-", "PKG trixie"),
    ({"torch": "2.14.1", "cuda": "13.0", "python": "3.12"}, OK, "2.14.1-cuda13.0-", "PKG noble"),
    ({"torch": "2.15.0", "cuda": "13.2", "python": "3.10"}, NO, ["3.10"], "I11 2.15: 3.11+"),
    ({"torch": "2.14.1", "cuda": "13.0", "python": "2.7"}, NO, ["2.7"], "nonsense"),
    ({"torch": "2.14.1", "cuda": "13.0", "python": "3"}, NO, ["'3'"], "nonsense"),
    # --- CUDA builds a release did not publish [PV] ------------------------------------
    ({"torch": "1.12.0", "cuda": "11.7"}, NO, ["10.2, 11.3, 11.6"], "PV v1.12.0"),
    ({"torch": "1.13.1", "cuda": "11.8"}, NO, ["11.6, 11.7"], "PV v1.13.1"),
    ({"torch": "2.0.1", "cuda": "12.1"}, NO, ["11.7, 11.8"], "PV v2.0.1"),
    ({"torch": "2.1.2", "cuda": "12.4"}, NO, ["11.8, 12.1"], "PV v2.1.2"),
    ({"torch": "2.3.1", "cuda": "12.4"}, NO, ["11.8, 12.1"], "PV v2.3.1: 12.4 from 2.4"),
    ({"torch": "2.6.0", "cuda": "12.1"}, NO, ["11.8, 12.4, 12.6"], "PV v2.6.0"),
    ({"torch": "2.7.1", "cuda": "12.4"}, NO, ["11.8, 12.6, 12.8"], "PV v2.7.1"),
    ({"torch": "2.8.0", "cuda": "11.8"}, NO, ["12.6", "12.8"], "PV v2.8.0 dropped 11.8"),
    ({"torch": "2.14.1", "cuda": "12.4"}, NO, ["13.0"], "I11"),
    ({"torch": "2.15.0", "cuda": "13.0"}, NO, ["13.2"], "I11 2.15.0 cu132"),
    ({"torch": "2.5.1", "cuda": "14.0"}, NO, ["11.8, 12.1, 12.4"], "no such CUDA"),
    # --- cuDNN majors belong to the torch x CUDA build [I11], [RM] ---------------------
    ({"torch": "1.12.0", "cuda": "10.2", "cudnn": "7"}, OK, "1.12.0-cuda10.2-cudnn7-", "I11"),
    ({"torch": "1.12.0", "cuda": "10.2", "cudnn": "8"}, NO, ["cuDNN 7"], "I11 cu102: 7.6.5"),
    ({"torch": "1.12.0", "cuda": "11.3", "cudnn": "8"}, OK, "1.12.0-cuda11.3-cudnn8-", "RM 1.12"),
    ({"torch": "2.3.1", "cuda": "12.1", "cudnn": "9"}, NO, ["cuDNN 8"], "RM 2.3: cuDNN 8.9"),
    ({"torch": "2.4.1", "cuda": "11.8", "cudnn": "9"}, OK, "2.4.1-cuda11.8-cudnn9-", "RM 2.4"),
    ({"torch": "2.4.1", "cuda": "12.4", "cudnn": "8"}, NO, ["cuDNN 9"], "RM 2.4: cuDNN 9.1"),
    ({"torch": "2.14.1", "cuda": "13.0", "cudnn": "cudnn9"}, OK, "2.14.1-cuda13.0-cudnn9-", "WHL"),
    ({"torch": "2.14.1", "cuda": "cpu", "cudnn": "9"}, NO, ["CPU variants have no cuDNN"], "-"),
    # --- flavors and base routes [I10], [NCI] ------------------------------------------
    ({"torch": "2.14.1", "cuda": "13.0", "flavor": "devel"}, OK, "2.14.1-cuda13.0-cudnn9-devel", "WHL"),
    ({"torch": "2.5.1", "cuda": "12.4", "flavor": "devel"}, OK, "2.5.1-cuda12.4-cudnn9-devel", "NCI"),
    ({"torch": "2.5.1", "cuda": "12.4", "flavor": "devel", "base": "os"}, NO, ["--base nvidia"], "I10"),
    ({"torch": "1.12.0", "cuda": "10.2", "base": "nvidia"}, NO, ["deleted"], "NCI: 10.2 gone"),
    ({"torch": "1.12.0", "cuda": "10.2", "flavor": "devel"}, NO, ["deleted"], "NCI: no nvcc 10.2"),
    ({"torch": "2.14.1", "cuda": "13.0", "os": "debian12", "base": "nvidia"}, NO, ["--base os"], "NCI"),
    ({"torch": "2.14.1", "cuda": "13.0", "flavor": "Devel"}, OK, "-devel", "case"),
    ({"torch": "2.14.1", "cuda": "13.0", "flavor": "debug"}, NO, ["runtime, devel"], "nonsense"),
    ({"torch": "2.14.1", "cuda": "13.0", "flavor": "runtim"}, NO, ["did you mean 'runtime'"], "typo"),
    ({"torch": "2.14.1", "cuda": "13.0", "os": "windows"}, NO, ["valid: debian12"], "nonsense"),
    ({"torch": "2.14.1", "cuda": "13.0", "os": "ubuntu18.04"}, NO, ["glibc >= 2.28", "ubuntu18.04 has glibc 2.27"], "EOL OS: kept for Python 3.7, below the wheel's glibc floor"),
    ({"torch": "2.7.1", "cuda": "11.8", "os": "ubuntu18.04", "base": "nvidia"}, NO, ["glibc >= 2.28"], "I11: >=2.7 needs 2.28"),
    # --- Horovod [HVD] ------------------------------------------------------------------
    ({"torch": "2.14.1", "cuda": "13.0", "horovod": "0.28.1"}, OK, "-horovod0.28.1", "HVD + cxx20"),
    ({"torch": "2.1.2", "cuda": "11.8", "horovod": "0.28.0"}, NO, ["does not build"], "HVD #3996"),
    ({"torch": "1.12.0", "cuda": "11.3", "horovod": "0.28.0"}, OK, "-horovod0.28.0", "HVD 0.28.0"),
    ({"torch": "2.14.1", "cuda": "13.0", "horovod": "latest"}, NO, ["known: "], "nonsense"),
    ({"torch": "2.14.1", "cuda": "13.0", "horovod": "none"}, OK, "2.14.1-cuda13.0-cudnn9-runtime", "-"),
    # --- torch versions that are not releases ------------------------------------------
    ({"torch": "1.12", "cuda": "11.3"}, NO, ["not in the compatibility data"], "no such release"),
    ({"torch": "2.16.0", "cuda": "13.2"}, NO, ["Nearest known releases"], "not released"),
    ({"torch": "abc", "cuda": "11.3"}, NO, ["torch abc is not in"], "nonsense"),
    ({"torch": "1.7.1", "cuda": "11.0"}, NO, ["1.8.0"], "before the data starts"),
    ({"torch": "2.14.1", "cuda": "gpu"}, NO, ["has no build for CUDA gpu"], "nonsense"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_kwargs", "verdict", "expected", "source"),
    TABLE,
    ids=[f"{i:03d}-{'-'.join(str(v) for v in row[0].values())}" for i, row in enumerate(TABLE)],
)
def test_request(compat, request_kwargs, verdict, expected, source):
    if verdict == OK:
        variant = resolve(VariantRequest(**request_kwargs), compat)
        assert expected in variant.name, (source, variant.name)
    else:
        with pytest.raises(UserInputError) as err:
            resolve(VariantRequest(**request_kwargs), compat)
        for word in expected:
            assert word in str(err.value), (source, str(err.value))


def test_table_is_large_and_covers_every_minor_release():
    assert len(TABLE) >= 100
    minors = {".".join(row[0]["torch"].split(".")[:2]) for row in TABLE}
    for minor in ("1.8", "1.9", "1.10", "1.11", "1.12", "1.13", "2.0", "2.1", "2.2", "2.3"):
        assert minor in minors
    for minor in ("2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.13"):
        assert minor in minors
    assert "2.14" in minors and "2.15" in minors
