"""Smoke checks `horovod_gloo` / `horovod_mpi`: run horovod_train.py with 2 processes.

    python3 check_horovod.py --launcher gloo|mpi [--expect-horovod V|none] [--expect-cuda M.m|cpu]

gloo: horovodrun -np 2 -H localhost:2 --gloo python horovod_train.py
mpi:  mpirun --allow-run-as-root -np 2 -bind-to none -map-by slot -x NCCL_DEBUG=INFO
      -x LD_LIBRARY_PATH -x PATH -mca pml ob1 -mca btl ^openib python horovod_train.py
Skipped when horovod is not installed and not expected; failed when expected but missing.
`horovodrun --check-build` is parsed into the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import smokelib  # noqa: E402  (after the sys.path line above)

NP = 2


def find_tool(name):
    path = shutil.which(name)
    if path:
        return path
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else None


def launcher_command(launcher, horovodrun, mpirun, python, name):
    script = [python, os.path.join(HERE, "horovod_train.py"), "--name", name]
    if launcher == "gloo":
        return [horovodrun, "-np", str(NP), "-H", "localhost:%d" % NP, "--gloo", *script]
    return [
        *(mpirun, "--allow-run-as-root", "-np", str(NP), "-bind-to", "none", "-map-by", "slot"),
        *("-x", "NCCL_DEBUG=INFO", "-x", "LD_LIBRARY_PATH", "-x", "PATH"),
        *("-mca", "pml", "ob1", "-mca", "btl", "^openib"),
        *script,
    ]


def read_check_build(horovodrun):
    try:
        proc = subprocess.run(
            [horovodrun, "--check-build"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    parsed = smokelib.parse_check_build(proc.stdout)
    if proc.returncode != 0:
        parsed["error"] = "exit %d: %s" % (proc.returncode, smokelib.tail(proc.stdout, 5))
    return parsed


def plan(launcher, build, have_horovodrun, have_mpirun):
    """(status, reason) when the launcher cannot or need not run, else (None, '')."""
    controllers = build.get("controllers", {}) if build else {}
    if launcher == "gloo":
        if not have_horovodrun:
            return "failed", "horovodrun not found"
        if controllers and not controllers.get("Gloo", False):
            return "skipped", "horovod built without the Gloo controller"
        return None, ""
    if controllers and not controllers.get("MPI", False):
        return "skipped", "horovod built without the MPI controller"
    if not have_mpirun:
        return "failed", "mpirun not found"
    return None, ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["gloo", "mpi"], required=True)
    smokelib.add_expectation_args(parser, ["expect-horovod", "expect-cuda", "require-gpus"])
    args = parser.parse_args(argv)
    name = "horovod_" + args.launcher
    expected = args.expect_horovod
    expected_none = expected is None or smokelib.is_none_value(expected)
    figures = {"expected": expected if expected is not None else smokelib.NOT_GIVEN}
    try:
        import horovod
        import horovod.torch as hvd
    except Exception as exc:
        if expected_none:
            return smokelib.emit_result(name, "skipped", "horovod not installed", figures)
        return smokelib.emit_result(
            name,
            "failed",
            "horovod %s expected but import horovod.torch failed: "
            "%s: %s" % (expected, type(exc).__name__, exc),
            figures,
        )
    version = getattr(horovod, "__version__", None)
    figures["found"] = version
    if expected is not None and smokelib.is_none_value(expected):
        return smokelib.emit_result(
            name, "failed", "horovod %s installed but the variant expects none" % version, figures
        )
    if expected is not None and not smokelib.versions_match(expected, version or ""):
        return smokelib.emit_result(
            name, "failed", "horovod: expected %s, found %s" % (expected, version), figures
        )

    horovodrun = find_tool("horovodrun")
    mpirun = find_tool("mpirun")
    figures["horovodrun"] = horovodrun
    figures["mpirun"] = mpirun
    build = read_check_build(horovodrun) if horovodrun else {}
    figures["check_build"] = build
    if not build.get("controllers"):  # fall back on the module's own answers
        build = {"controllers": {"MPI": bool(hvd.mpi_built()), "Gloo": bool(hvd.gloo_built())}}
    status, reason = plan(args.launcher, build, horovodrun is not None, mpirun is not None)
    if status is not None:
        return smokelib.emit_result(name, status, reason, figures)

    import torch

    cpu_mode = smokelib.is_cpu_variant(args.expect_cuda) or torch.version.cuda is None
    gpus = 0 if cpu_mode else int(torch.cuda.device_count())
    figures["gpus_visible"] = gpus
    if args.require_gpus is not None and gpus < args.require_gpus:
        return smokelib.emit_result(
            name, "failed", "needs %d GPUs, found %d" % (args.require_gpus, gpus), figures
        )
    if gpus == 1:
        return smokelib.emit_result(name, "skipped", "needs 2 GPUs, found 1", figures)

    cmd = launcher_command(args.launcher, horovodrun, mpirun, sys.executable, name)
    figures["launcher"] = " ".join(cmd)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("LD_LIBRARY_PATH", "")  # mpirun -x of an unset variable warns
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU run even with a CUDA build
    print("running: %s" % figures["launcher"], flush=True)
    outcome = smokelib.run_captured(cmd, env=env, echo=True, new_session=False)
    worker = smokelib.last_result(outcome.output, name)
    if worker is None:
        return smokelib.emit_result(
            name,
            "failed",
            "%s exited with code %s and no result line"
            % (os.path.basename(cmd[0]), outcome.returncode),
            figures,
        )
    figures.update(worker.get("figures", {}))
    status, reason = worker["status"], worker.get("reason", "")
    if outcome.returncode != 0 and status != "failed":
        status, reason = "failed", "launcher exited with code %d; %s" % (outcome.returncode, reason)
    return smokelib.emit_result(name, status, reason, figures)


if __name__ == "__main__":
    sys.exit(main())
