"""Horovod worker for the `horovod_gloo` / `horovod_mpi` smoke checks; start it with
horovodrun or mpirun, e.g.

    horovodrun -np 2 -H localhost:2 --gloo python3 horovod_train.py

hvd.init, an allreduce of a rank-dependent tensor (checked against the exact average),
broadcast_parameters + one DistributedOptimizer step, then an allgather proving the
parameters are equal on every rank. Rank 0 prints the result line.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

import smokelib


def run(hvd, torch, name):
    figures = {"size": hvd.size(), "rank": hvd.rank()}
    use_cuda = torch.cuda.is_available() and torch.version.cuda is not None
    if use_cuda:
        torch.cuda.set_device(hvd.local_rank())
        device = torch.device("cuda", hvd.local_rank())
    else:
        device = torch.device("cpu")
    figures["device"] = str(device)
    for key in ("gloo_enabled", "mpi_enabled", "nccl_built", "gloo_built", "mpi_built"):
        fn = getattr(hvd, key, None)
        if fn is not None:
            with contextlib.suppress(Exception):
                figures[key] = bool(fn())
    smokelib.maybe_hang(name)

    size, rank = hvd.size(), hvd.rank()
    tensor = torch.full((4,), float(rank + 1), device=device)
    averaged = hvd.allreduce(tensor, name="gpuimages_smoke_avg")  # default op: average
    expected = (size + 1) / 2.0
    figures["allreduce_avg"] = float(averaged[0])
    figures["allreduce_expected"] = expected
    allreduce_ok = bool(torch.all(averaged.cpu() == expected))

    torch.manual_seed(100 + rank)  # different start on each rank: broadcast must fix it
    model = torch.nn.Linear(8, 1).to(device)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters())
    hvd.broadcast_optimizer_state(opt, root_rank=0)
    x = torch.randn(16, 8, device=device)  # rank-dependent data: gradients must be averaged
    y = torch.randn(16, 1, device=device)
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = hvd.allgather(flat.unsqueeze(0), name="gpuimages_smoke_params")
    diff = float((gathered - gathered[0:1]).abs().max())
    figures["param_max_abs_diff_across_ranks"] = diff
    figures["param_checksum"] = float(flat.double().sum())
    figures["params_changed"] = bool(not torch.equal(before, flat))

    problems = []
    if not allreduce_ok:
        problems.append("allreduce average %s, expected %s" % (averaged.cpu().tolist(), expected))
    if diff > 1e-6:
        problems.append("parameters differ across ranks after one step (max abs diff %.3g)" % diff)
    if not figures["params_changed"]:
        problems.append("the DistributedOptimizer step did not change the parameters")
    return problems, figures


def main(argv=None):
    parser = argparse.ArgumentParser(description="Horovod smoke worker")
    parser.add_argument("--name", default="horovod", help="check name in the result line")
    args = parser.parse_args(argv)
    figures = {}
    rank = 0
    try:
        import horovod.torch as hvd
        import torch

        hvd.init()
        rank = hvd.rank()
        problems, figures = run(hvd, torch, args.name)
        hvd.shutdown()
    except Exception as exc:
        traceback.print_exc()
        if rank == 0:
            smokelib.emit_result(
                args.name, "failed", "rank %d: %s: %s" % (rank, type(exc).__name__, exc), figures
            )
        return 1
    if rank == 0:
        if problems:
            smokelib.emit_result(args.name, "failed", "; ".join(problems), figures)
        else:
            smokelib.emit_result(
                args.name,
                "passed",
                "size %d: allreduce average %.4g exact, "
                "parameters equal after a DistributedOptimizer step"
                % (figures["size"], figures["allreduce_avg"]),
                figures,
            )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
