"""Smoke check `ddp`: launch ddp_train.py with torchrun (NCCL on GPUs, gloo on CPU).

    python3 check_ddp.py [--expect-cuda M.m|cpu] [--require-gpus N] [--nproc-per-node K]
        [--nnodes N --node-rank R --master-addr A [--master-port P]]

One node: all visible GPUs (one rank each), or 2 gloo processes on CPU. Several nodes:
run this (or suite.py) on every node with the same --nnodes/--master-addr/--master-port
and its own --node-rank; on CPU each node starts 1 process unless --nproc-per-node says.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import nccl_log  # noqa: E402  (after the sys.path line above)
import smokelib  # noqa: E402

NAME = "ddp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_multinode_args(parser):
    parser.add_argument("--nnodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument("--node-rank", type=int, default=0, help="this node's rank (default 0)")
    parser.add_argument("--master-addr", default=None, help="address of node 0 (default 127.0.0.1)")
    parser.add_argument(
        "--master-port",
        type=int,
        default=None,
        help="port on node 0 (default: a free port on one node, 29500 on several)",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="processes on this node (default: all GPUs; on CPU 2, or 1 per node)",
    )


def plan(cpu_variant, cuda_built, gpus, require_gpus, nnodes, nproc_per_node):
    """Decide how to run: returns (status_or_None, reason, mode, nproc).

    status is 'skipped'/'failed' when nothing should be launched."""
    if require_gpus is not None and gpus < require_gpus:
        return "failed", "needs %d GPUs, found %d" % (require_gpus, gpus), None, 0
    if cpu_variant or not cuda_built or gpus == 0:
        note = (
            "CPU variant"
            if cpu_variant
            else ("torch built without CUDA" if not cuda_built else "no GPU visible")
        )
        nproc = nproc_per_node or (2 if nnodes == 1 else 1)
        if nproc * nnodes < 2:
            return "failed", "world size %d: needs at least 2 processes" % (nproc * nnodes), None, 0
        return None, note + ": gloo on CPU", "cpu", nproc
    nproc = nproc_per_node or gpus
    if nproc > gpus:
        return "failed", "--nproc-per-node %d but only %d GPUs" % (nproc, gpus), None, 0
    if nproc * nnodes < 2:
        return "skipped", "needs 2 GPUs, found %d" % gpus, None, 0
    return None, "NCCL on %d GPU(s) per node" % nproc, "gpu", nproc


def has_torch_distributed_run():
    """torch >= 1.9 has torch.distributed.run (torchrun); found without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True  # let the launcher report the problem
    return any(
        os.path.exists(os.path.join(loc, "distributed", "run.py"))
        for loc in spec.submodule_search_locations
    )


def launcher_command(
    python, nnodes, node_rank, master_addr, master_port, nproc, script_args, have_run=True
):
    if have_run:
        head = [python, "-m", "torch.distributed.run", "--monitor_interval", "1"]
    else:  # torch < 1.9
        head = [python, "-m", "torch.distributed.launch", "--use_env"]
    return [
        *head,
        *("--nnodes", str(nnodes), "--node_rank", str(node_rank)),
        *("--master_addr", master_addr, "--master_port", str(master_port)),
        *("--nproc_per_node", str(nproc)),
        os.path.join(HERE, "ddp_train.py"),
        *script_args,
    ]


def nccl_transport(output, nnodes, nproc, figures, status, reason):
    """Record which transport carried NCCL's traffic; fail a one-node run on sockets."""
    found = nccl_log.transports(output)
    figures["nccl_transports"] = found
    figures["nccl_transport"] = nccl_log.summary(found)
    ok, why = nccl_log.verdict(found, nnodes, nproc)
    if not ok and status == "passed":
        return "failed", why
    return status, reason + ("; " + why if status == "passed" and found else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smokelib.add_expectation_args(parser, ["expect-cuda", "require-gpus"])
    add_multinode_args(parser)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    cpu_variant = smokelib.is_cpu_variant(args.expect_cuda)
    if cpu_variant:  # no need to pay for importing torch here: the workers check gloo
        cuda_built, gpus, dist = False, 0, None
    else:
        try:
            import torch
            import torch.distributed as dist
        except Exception as exc:
            return smokelib.emit_result(NAME, "failed", "import torch failed: %s" % exc)
        if not dist.is_available():
            return smokelib.emit_result(
                NAME, "failed", "torch.distributed is not available in this build"
            )
        cuda_built = torch.version.cuda is not None
        gpus = int(torch.cuda.device_count())
    status, reason, mode, nproc = plan(
        cpu_variant, cuda_built, gpus, args.require_gpus, args.nnodes, args.nproc_per_node
    )
    figures = {"gpus_visible": gpus, "nnodes": args.nnodes, "node_rank": args.node_rank}
    if status is not None:
        return smokelib.emit_result(NAME, status, reason, figures)
    backend = "nccl" if mode == "gpu" else "gloo"
    if dist is not None and backend == "nccl" and not dist.is_nccl_available():
        return smokelib.emit_result(NAME, "failed", "torch has no NCCL backend", figures)
    if dist is not None and backend == "gloo" and not dist.is_gloo_available():
        return smokelib.emit_result(NAME, "failed", "torch has no gloo backend", figures)

    master_addr = args.master_addr or "127.0.0.1"
    if args.master_port:
        master_port = args.master_port
    elif args.nnodes == 1:
        master_port = smokelib.free_port()
    else:
        master_port = 29500
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if backend == "nccl":
        env.setdefault("NCCL_DEBUG", "INFO")  # the channel lines name the transport used
    if (args.nnodes == 1 or master_addr in LOOPBACK) and "GLOO_SOCKET_IFNAME" not in env:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # do not depend on the hostname resolving
    have_run = has_torch_distributed_run()
    cmd = launcher_command(
        sys.executable,
        args.nnodes,
        args.node_rank,
        master_addr,
        master_port,
        nproc,
        ["--backend", backend, "--steps", str(args.steps)],
        have_run,
    )
    figures["launcher"] = " ".join(cmd)
    print("running: %s" % figures["launcher"], flush=True)
    outcome = smokelib.run_captured(cmd, env=env, echo=True, new_session=False)
    worker = smokelib.last_result(outcome.output, NAME)
    if worker is None:
        return smokelib.emit_result(
            NAME,
            "failed",
            "launcher exited with code %s and no result line" % outcome.returncode,
            figures,
        )
    figures.update(worker.get("figures", {}))
    status, reason = worker["status"], worker.get("reason", "")
    if outcome.returncode != 0 and status != "failed":
        status, reason = "failed", "launcher exited with code %d; %s" % (outcome.returncode, reason)
    if backend == "nccl":
        status, reason = nccl_transport(outcome.output, args.nnodes, nproc, figures, status, reason)
    if status == "passed" and args.nnodes > 1:
        reason = "node %d of %d: %s" % (args.node_rank, args.nnodes, reason)
    return smokelib.emit_result(NAME, status, reason, figures)


if __name__ == "__main__":
    sys.exit(main())
