"""NCCL transport from NCCL_DEBUG=INFO logs (scripts/smoke/nccl_log.py), on recorded lines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "data" / "nccl"


def _load(name: str):
    path = ROOT / "scripts" / "smoke" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gpuimages_smoke_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nccl_log = _load("nccl_log")


def found(name: str) -> dict[str, int]:
    return nccl_log.transports((LOGS / name).read_text())


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("p2p_2.18.txt", {"P2P/IPC": 4}),
        ("cumem_2.21.txt", {"P2P/IPC": 5}),
        ("shm_2.20.txt", {"SHM": 4}),
        ("socket_2.27.txt", {"NET/Socket": 4}),
        ("ib_2.23.txt", {"NET/IB": 4}),
    ],
)
def test_transports_counted_per_channel_connection(log, expected):
    assert found(log) == expected


@pytest.mark.parametrize(
    ("via", "kind"),
    [
        ("P2P/IPC/read", "P2P/IPC"),
        ("P2P/CUMEM/read", "P2P/IPC"),
        ("P2P/direct", "P2P/IPC"),
        ("SHM/direct/direct", "SHM"),
        ("NET/Socket/0", "NET/Socket"),
        ("NET/IB/0/GDRDMA", "NET/IB"),
        ("NET/IBext/1", "NET/IB"),
        ("NET/AWS", "NET/AWS"),
        ("NVLS", "NVLS"),
    ],
)
def test_classify(via, kind):
    assert nccl_log.classify(via) == kind


def test_single_node_on_sockets_fails_with_the_fix():
    ok, why = nccl_log.verdict(found("socket_2.27.txt"), nnodes=1, gpus_per_node=2)
    assert not ok
    assert "fell back to sockets (NET/Socket)" in why and "--ipc=host" in why


@pytest.mark.parametrize("log", ["p2p_2.18.txt", "cumem_2.21.txt", "shm_2.20.txt"])
def test_single_node_on_p2p_or_shm_passes(log):
    ok, why = nccl_log.verdict(found(log), nnodes=1, gpus_per_node=2)
    assert ok and why.startswith("NCCL transport: ")


def test_sockets_between_nodes_are_fine():
    # Across nodes without IB, TCP is what there is; one GPU per node never has a peer.
    assert nccl_log.verdict({"NET/Socket": 2}, nnodes=2, gpus_per_node=1)[0]
    assert nccl_log.verdict(found("ib_2.23.txt"), nnodes=2, gpus_per_node=1) == (
        True,
        "NCCL transport: NET/IB",
    )


def test_mixed_transports_best_first():
    assert nccl_log.summary({"NET/Socket": 1, "SHM": 2, "P2P/IPC": 3}) == ("P2P/IPC+SHM+NET/Socket")
    ok, _ = nccl_log.verdict({"P2P/IPC": 3, "NET/Socket": 1}, nnodes=1, gpus_per_node=4)
    assert not ok


def test_no_channel_lines_is_not_a_failure():
    ok, why = nccl_log.verdict({}, nnodes=1, gpus_per_node=2)
    assert ok and "no channel lines" in why
    assert nccl_log.transports("NCCL INFO Channel 00/02 :    0   1\n") == {}


def test_check_ddp_records_and_fails_on_sockets():
    import sys

    sys.path.insert(0, str(ROOT / "scripts" / "smoke"))
    check_ddp = _load("check_ddp")
    figures: dict = {}
    text = (LOGS / "socket_2.27.txt").read_text()
    status, reason = check_ddp.nccl_transport(text, 1, 2, figures, "passed", "loss fell")
    assert status == "failed" and "sockets" in reason
    assert figures["nccl_transport"] == "NET/Socket"
    figures = {}
    text = (LOGS / "p2p_2.18.txt").read_text()
    status, reason = check_ddp.nccl_transport(text, 1, 2, figures, "passed", "loss fell")
    assert status == "passed" and reason == "loss fell; NCCL transport: P2P/IPC"
    assert figures["nccl_transports"] == {"P2P/IPC": 4}
