"""gpuimages smoke suite: the checks that make an image "vetted".

Inside an image (its GPUIMAGES_* variables say what it should contain):

    python3 /opt/gpuimages/smoke/suite.py [--report /tmp/smoke.json]

Bare on a GPU host with torch installed (no Docker), from a checkout:

    python3 scripts/smoke/suite.py --expect-torch 1.12.0 --expect-cuda 11.3 --expect-cudnn 8 \\
        --flavor runtime --min-driver 450.80.02 --report smoke.json

Checks: gpu, torch, cuda (the CUDA stack, no GPU needed), ddp, flavor, horovod_gloo,
horovod_mpi (select with --only/--skip; "horovod" means both). Each runs as a
subprocess with a per-check --timeout (the whole process tree is killed on expiry).
Every --expect-* option defaults to GPUIMAGES_<NAME>
(--expect-torch: GPUIMAGES_TORCH, --flavor: GPUIMAGES_FLAVOR, --min-driver:
GPUIMAGES_MIN_DRIVER, ...); an expectation that is not given is reported as not checked.
Multi-node DDP: run the suite on every node with --nnodes N --node-rank R --master-addr A
[--master-port P]. Prints a summary to stderr and the JSON report to stdout (or to
--report); exits 0 when no check failed, 1 otherwise. Standard library + torch only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_cuda  # noqa: E402  (their option lists; torch is imported only when run)
import check_torch  # noqa: E402
import smokelib  # noqa: E402  (after the sys.path line above)

SCHEMA = 1
CHECK_NAMES = ["gpu", "torch", "cuda", "ddp", "flavor", "horovod_gloo", "horovod_mpi"]
ALIASES = {"horovod": ["horovod_gloo", "horovod_mpi"]}
DEFAULT_TIMEOUT = 300
LOG_TAIL_LINES = 40
FOUND_KEYS = ("torch", "torchvision", "python", "python_prefix", "cuda", "cudnn", "nccl", "horovod")


# ------------------------------------------------------------------------- options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suite.py",
        description="gpuimages smoke suite (see the module docstring)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    smokelib.add_expectation_args(parser, list(smokelib.EXPECTATIONS))
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated checks to run: %s" % ",".join(CHECK_NAMES + list(ALIASES)),
    )
    parser.add_argument("--skip", default=None, help="comma-separated checks not to run")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per check (default %d)" % DEFAULT_TIMEOUT,
    )
    parser.add_argument(
        "--report", default=None, help="write the JSON report here (default: stdout)"
    )
    parser.add_argument("--nnodes", type=int, default=1, help="DDP nodes (multi-node mode)")
    parser.add_argument(
        "--node-rank", type=int, default=0, help="this node's rank (multi-node mode)"
    )
    parser.add_argument("--master-addr", default=None, help="node 0's address (multi-node mode)")
    parser.add_argument(
        "--master-port", type=int, default=None, help="node 0's port (multi-node mode)"
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="DDP processes on this node (default: all GPUs; CPU: 2, or 1 per node)",
    )
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.selected = select_checks(args.only, args.skip)
    except ValueError as exc:
        parser.error(str(exc))
    if args.archs:
        try:
            smokelib.normalize_archs(args.archs)
        except ValueError as exc:
            parser.error(str(exc))
    if args.nnodes > 1 and not args.master_addr:
        parser.error("--nnodes %d needs --master-addr" % args.nnodes)
    return args


def _names(spec: Optional[str]) -> List[str]:
    out: List[str] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item in ALIASES:
            out.extend(ALIASES[item])
        elif item in CHECK_NAMES:
            out.append(item)
        else:
            raise ValueError(
                "unknown check %r (choose from %s)" % (item, ", ".join(CHECK_NAMES + list(ALIASES)))
            )
    return out


def select_checks(only: Optional[str], skip: Optional[str]) -> List[str]:
    chosen = _names(only) if only else list(CHECK_NAMES)
    skipped = _names(skip)
    return [name for name in CHECK_NAMES if name in chosen and name not in skipped]


def expectations(args: argparse.Namespace) -> Dict[str, Optional[str]]:
    return {opt: getattr(args, opt.replace("-", "_")) for opt in smokelib.EXPECTATIONS}


def _forward(args: argparse.Namespace, options: List[str]) -> List[str]:
    out: List[str] = []
    for opt in options:
        value = getattr(args, opt.replace("-", "_"))
        if value is not None:
            out += ["--" + opt, str(value)]
    return out


def check_command(name: str, args: argparse.Namespace, python: str = sys.executable) -> List[str]:
    """The subprocess command of one check, with the resolved expectations forwarded."""

    def script(file: str) -> List[str]:
        return [python, os.path.join(HERE, file)]

    if name == "gpu":
        return script("check_gpu.py") + _forward(
            args, ["min-driver", "expect-cuda", "require-gpus"]
        )
    if name == "torch":
        return script("check_torch.py") + _forward(args, check_torch.OPTIONS)
    if name == "cuda":
        return script("check_cuda.py") + _forward(args, check_cuda.OPTIONS)
    if name == "ddp":
        cmd = script("check_ddp.py") + _forward(args, ["expect-cuda", "require-gpus"])
        cmd += ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank)]
        for opt in ("master-addr", "master-port", "nproc-per-node"):
            value = getattr(args, opt.replace("-", "_"))
            if value is not None:
                cmd += ["--" + opt, str(value)]
        return cmd
    if name == "flavor":
        return script("check_flavor.py") + _forward(args, ["flavor", "expect-cuda", "archs"])
    if name in ("horovod_gloo", "horovod_mpi"):
        launcher = name.split("_", 1)[1]
        forwarded = _forward(args, ["expect-horovod", "expect-cuda", "require-gpus"])
        return [*script("check_horovod.py"), "--launcher", launcher, *forwarded]
    raise ValueError("unknown check %r" % name)


# --------------------------------------------------------------------------- running


def result_from_run(name: str, outcome: "smokelib.RunOutcome", timeout: float) -> dict:
    """One report entry from a finished (or killed) check subprocess."""
    entry = {
        "name": name,
        "status": "failed",
        "reason": "",
        "duration_s": round(outcome.duration, 2),
        "figures": {},
        "log_tail": smokelib.tail(outcome.output, LOG_TAIL_LINES),
    }
    result = smokelib.last_result(outcome.output, name)
    if result is not None:
        entry["figures"] = result.get("figures") or {}
    if outcome.timed_out:
        entry["reason"] = "timed out after %g s" % timeout
        return entry
    if result is None:
        entry["reason"] = "exited with code %s without a result line" % outcome.returncode
        return entry
    entry["status"] = result["status"]
    entry["reason"] = result.get("reason", "")
    if outcome.returncode != 0 and entry["status"] != "failed":
        entry["status"] = "failed"
        entry["reason"] = "exited with code %d after reporting %s: %s" % (
            outcome.returncode,
            result["status"],
            entry["reason"],
        )
    return entry


def check_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_check(name: str, args: argparse.Namespace) -> dict:
    cmd = check_command(name, args)
    outcome = smokelib.run_captured(cmd, timeout=args.timeout, env=check_env())
    return result_from_run(name, outcome, args.timeout)


def not_selected(name: str, args: argparse.Namespace) -> dict:
    how = "--only %s" % args.only if args.only else "--skip %s" % args.skip
    return {
        "name": name,
        "status": "skipped",
        "reason": "not selected (%s)" % how,
        "duration_s": 0.0,
        "figures": {},
        "log_tail": "",
    }


# --------------------------------------------------------------------------- report


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    try:
        return metadata.version(name)
    except Exception:
        return None


def host_info() -> dict:
    info = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": _dist_version("torch"),
        "cpu_count": os.cpu_count(),
        "gpus": [],
    }
    if smokelib.nvidia_smi_path():
        try:
            gpus, _ = smokelib.query_gpus()
            info["gpus"] = [
                {"name": g["name"], "driver": g["driver"], "memory_mib": g["memory_mib"]}
                for g in gpus
            ]
        except Exception as exc:
            info["gpus_error"] = str(exc)
    return info


def found_from_results(results: List[dict]) -> dict:
    found = dict.fromkeys(FOUND_KEYS)
    for entry in results:
        figures = entry.get("figures") or {}
        if entry["name"] == "torch" and isinstance(figures.get("found"), dict):
            for key in FOUND_KEYS:
                if key in figures["found"]:
                    found[key] = figures["found"][key]
        if entry["name"].startswith("horovod_") and figures.get("found"):
            found["horovod"] = figures["found"]
    return found


def probe_found(timeout: float) -> dict:
    """Found versions when the torch check did not run: check_torch.py --found-only."""
    cmd = [sys.executable, os.path.join(HERE, "check_torch.py"), "--found-only"]
    outcome = smokelib.run_captured(cmd, timeout=timeout, env=check_env())
    result = smokelib.last_result(outcome.output, "torch")
    found = (result or {}).get("figures", {}).get("found") or {}
    return {key: found.get(key) for key in FOUND_KEYS if key in found}


def assemble_report(
    host: dict, results: List[dict], found: dict, expected: dict, duration: float
) -> dict:
    failed = [r["name"] for r in results if r["status"] == "failed"]
    return {
        "schema": SCHEMA,
        "passed": not failed,
        "failed_checks": failed,
        "duration_s": round(duration, 2),
        "host": host,
        "expected": {k: (v if v is not None else smokelib.NOT_GIVEN) for k, v in expected.items()},
        "checks": results,
        "found": {key: found.get(key) for key in FOUND_KEYS},
    }


def format_summary(report: dict) -> str:
    host = report["host"]
    gpus = host.get("gpus") or []
    gpu_text = (
        "%d GPU(s): %s" % (len(gpus), ", ".join(sorted(set(g["name"] for g in gpus))))
        if gpus
        else "no GPU"
    )
    lines = [
        "gpuimages smoke suite on %s (python %s, torch %s, %s)"
        % (host.get("hostname"), host.get("python"), host.get("torch"), gpu_text)
    ]
    labels = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
    for entry in report["checks"]:
        lines.append(
            "  %s  %-13s %7.1fs  %s"
            % (labels[entry["status"]], entry["name"], entry["duration_s"], entry["reason"])
        )
    not_given = [k for k, v in report["expected"].items() if v == smokelib.NOT_GIVEN]
    if not_given:
        lines.append("expectations not given (not checked): %s" % ", ".join(not_given))
    counts = {s: sum(1 for r in report["checks"] if r["status"] == s) for s in smokelib.STATUSES}
    lines.append(
        "result: %s (%d passed, %d failed, %d skipped) in %.1f s"
        % (
            "PASSED" if report["passed"] else "FAILED",
            counts["passed"],
            counts["failed"],
            counts["skipped"],
            report["duration_s"],
        )
    )
    for entry in report["checks"]:
        if entry["status"] == "failed" and entry["log_tail"]:
            lines.append("--- %s: last lines of output ---" % entry["name"])
            lines.extend("  | " + line for line in entry["log_tail"].splitlines()[-15:])
    return "\n".join(lines)


def write_report(report: dict, path: Optional[str]) -> None:
    text = json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"
    if not path:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    start = time.time()
    host = host_info()
    results = []
    for name in CHECK_NAMES:
        if name not in args.selected:
            results.append(not_selected(name, args))
            continue
        sys.stderr.write("[smoke] %s ...\n" % name)
        sys.stderr.flush()
        entry = run_check(name, args)
        sys.stderr.write(
            "[smoke] %s: %s (%.1f s) %s\n"
            % (name, entry["status"], entry["duration_s"], entry["reason"])
        )
        sys.stderr.flush()
        results.append(entry)
    found = found_from_results(results)
    if found.get("torch") is None:
        found.update(probe_found(min(args.timeout, 120)))
    if found.get("horovod") is None:
        found["horovod"] = _dist_version("horovod")
    if found.get("python") is None:
        found["python"] = platform.python_version()
    report = assemble_report(host, results, found, expectations(args), time.time() - start)
    sys.stderr.write(format_summary(report) + "\n")
    sys.stderr.flush()
    write_report(report, args.report)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
