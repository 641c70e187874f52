"""Which transport carried NCCL's traffic, read from an NCCL_DEBUG=INFO log.

Standard library only, Python 3.8+. NCCL 2.18-2.27 print one line per channel
connection when a communicator connects its rings and trees, e.g.

    host:12:34 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/IPC/read
    host:12:34 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
    host:12:34 [0] NCCL INFO Channel 01 : 0[0] -> 1[1] via SHM/direct/direct
    host:12:34 [0] NCCL INFO Channel 00/0 : 1[1] -> 0[0] [receive] via NET/Socket/0
    host:12:34 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] [send] via NET/IB/0/GDRDMA

(older ones print the peer's bus id in the brackets: `0[3000] -> 1[4000]`).
A single-node run whose GPUs talk over NET/Socket fell back to TCP through the kernel:
typically no --ipc=host / too small /dev/shm (SHM fails) and no P2P between the GPUs.
"""

from __future__ import annotations

import re

CHANNEL = re.compile(
    r"NCCL INFO Channel \d+(?:/\d+)?\s*:\s*(\d+)\[[0-9a-fA-Fx]+\]\s*->\s*(\d+)\[[0-9a-fA-Fx]+\]"
    r"(?:\s*\[(?:send|receive)\])?\s+via\s+(\S+)"
)
P2P, SHM, SOCKET, IB, NVLS = "P2P/IPC", "SHM", "NET/Socket", "NET/IB", "NVLS"
ORDER = (NVLS, P2P, SHM, IB, SOCKET)  # best first, where one run used several


def classify(via):
    """'P2P/CUMEM/read' -> 'P2P/IPC'; 'NET/IBext/0/GDRDMA' -> 'NET/IB'; and so on."""
    head = via.split("/")
    if head[0] == "P2P":
        return P2P
    if head[0] == "SHM":
        return SHM
    if head[0] == "NVLS":
        return NVLS
    if head[0] == "NET" and len(head) > 1:
        if head[1] == "Socket":
            return SOCKET
        if head[1].startswith("IB"):
            return IB
        return "NET/" + head[1]
    return head[0]


def transports(text):
    """{transport: number of channel connections} found in the log."""
    found = {}
    for m in CHANNEL.finditer(text):
        kind = classify(m.group(3))
        found[kind] = found.get(kind, 0) + 1
    return found


def summary(found):
    """The transports used, best first ('P2P/IPC', 'SHM+NET/Socket', ...), or 'unknown'."""
    if not found:
        return "unknown"
    ranked = sorted(found, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
    return "+".join(ranked)


def verdict(found, nnodes, gpus_per_node):
    """(ok, reason) for a DDP run's transports. Single node, several GPUs: sockets fail it."""
    if not found:
        return True, "NCCL printed no channel lines (NCCL_DEBUG=INFO not honoured?)"
    if nnodes == 1 and gpus_per_node > 1 and SOCKET in found:
        return False, (
            "NCCL fell back to sockets (%s) between GPUs of one node: run with --ipc=host (or "
            "a large --shm-size) so SHM works, and check P2P (nvidia-smi topo -m; "
            "NCCL_P2P_DISABLE unset)" % summary(found)
        )
    return True, "NCCL transport: %s" % summary(found)
