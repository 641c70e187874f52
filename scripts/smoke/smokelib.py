"""Shared helpers for the gpuimages smoke checks.

Standard library only (torch is imported lazily where needed) and Python 3.8
compatible: this file is copied into every image next to the check scripts and
also runs bare on GPU hosts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

MARKER = "GPUIMAGES_RESULT "
ENV_PREFIX = "GPUIMAGES_"
HANG_ENV = "GPUIMAGES_SMOKE_TEST_HANG"
STATUSES = ("passed", "failed", "skipped")
NOT_GIVEN = "not given"

# option name -> (environment variable, help). Each check script takes the subset it
# needs; the suite takes all of them and forwards the resolved values.
EXPECTATIONS = {
    "expect-torch": ("GPUIMAGES_TORCH", "expected torch version (a local +cuXXX part is ignored)"),
    "expect-cuda": ("GPUIMAGES_CUDA", "expected CUDA major.minor of torch, or 'cpu'"),
    "expect-cudnn": ("GPUIMAGES_CUDNN", "expected cuDNN major version"),
    "expect-cudnn-version": (
        "GPUIMAGES_CUDNN_VERSION",
        "expected full cuDNN version (X.Y.Z), or 'none' when not recorded",
    ),
    "expect-nccl": ("GPUIMAGES_NCCL", "expected NCCL version (X.Y.Z), or 'none' when not recorded"),
    "base": (
        "GPUIMAGES_BASE",
        "where CUDA comes from: os (torch's wheels) or nvidia (nvidia/cuda)",
    ),
    "expect-python": ("GPUIMAGES_PYTHON", "expected Python major.minor"),
    "expect-torchvision": ("GPUIMAGES_TORCHVISION", "expected torchvision version, or 'none'"),
    "expect-horovod": ("GPUIMAGES_HOROVOD", "expected Horovod version, or 'none'"),
    "flavor": ("GPUIMAGES_FLAVOR", "image flavor: runtime or devel"),
    "min-driver": ("GPUIMAGES_MIN_DRIVER", "minimum NVIDIA driver version, e.g. 450.80.02"),
    "archs": ("GPUIMAGES_ARCHS", "GPU archs the variant targets, e.g. sm_70,sm_80 or 7.0;8.0+PTX"),
    "require-gpus": (
        "GPUIMAGES_REQUIRE_GPUS",
        "fail (instead of skip) when fewer GPUs are visible",
    ),
}


# --------------------------------------------------------------------------- options


def env_default(option: str, environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The default of an expectation option: its GPUIMAGES_* variable, None if unset/empty."""
    environ = os.environ if environ is None else environ
    value = environ.get(EXPECTATIONS[option][0], "").strip()
    # Images label a CPU variant's driver minimum and GPU archs "none": nothing to check.
    if option in ("min-driver", "archs") and is_none_value(value):
        return None
    return value or None


def add_expectation_args(parser: Any, options: Sequence[str]) -> None:
    for option in options:
        env_name, help_text = EXPECTATIONS[option]
        kwargs: Dict[str, Any] = {
            "default": env_default(option),
            "help": "%s (default: $%s)" % (help_text, env_name),
        }
        if option == "require-gpus":
            kwargs["type"] = int
            kwargs["default"] = int(kwargs["default"]) if kwargs["default"] else None
        if option == "flavor":
            kwargs["choices"] = ["runtime", "devel"]
        parser.add_argument("--" + option, **kwargs)


def is_none_value(value: Optional[str]) -> bool:
    return value is not None and value.strip().lower() in ("none", "no", "false", "0", "off")


def is_cpu_variant(expect_cuda: Optional[str]) -> bool:
    return expect_cuda is not None and expect_cuda.strip().lower() == "cpu"


# ---------------------------------------------------------------------- result lines


def make_result(name: str, status: str, reason: str = "", figures: Optional[dict] = None) -> dict:
    if status not in STATUSES:
        raise ValueError("bad status %r" % status)
    return {"name": name, "status": status, "reason": reason, "figures": figures or {}}


def format_result_line(result: dict) -> str:
    return MARKER + json.dumps(result, sort_keys=True, default=str)


def emit_result(name: str, status: str, reason: str = "", figures: Optional[dict] = None) -> int:
    """Print the one result line of a check; returns the exit code the check should use."""
    sys.stdout.flush()
    sys.stderr.flush()
    print(format_result_line(make_result(name, status, reason, figures)), flush=True)
    return 1 if status == "failed" else 0


def parse_result_lines(text: str) -> List[dict]:
    """All well-formed result objects in a check's output, in order."""
    results = []
    for line in text.splitlines():
        idx = line.find(MARKER)
        if idx < 0:
            continue
        try:
            obj = json.loads(line[idx + len(MARKER) :])
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("status") in STATUSES and "name" in obj:
            results.append(obj)
    return results


def last_result(text: str, name: Optional[str] = None) -> Optional[dict]:
    """The last result line (for `name`, when given). Wrappers re-emit after children."""
    results = parse_result_lines(text)
    if name is not None:
        results = [r for r in results if r.get("name") == name]
    return results[-1] if results else None


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def maybe_hang(check: str) -> None:
    """Testing hook: GPUIMAGES_SMOKE_TEST_HANG=ddp,torch makes those checks hang."""
    wanted = [w.strip() for w in os.environ.get(HANG_ENV, "").split(",") if w.strip()]
    if check in wanted:
        print("%s=%s: hanging on purpose" % (HANG_ENV, os.environ[HANG_ENV]), flush=True)
        while True:
            time.sleep(3600)


# -------------------------------------------------------------------------- versions

_RELEASE_RE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$")


def split_version(version: str) -> Tuple[Tuple[int, ...], str, str]:
    """'2.1.0a0+cu121' -> ((2, 1, 0), 'a0', 'cu121'). Non-numeric start -> ((), text, '')."""
    public, _, local = str(version).strip().partition("+")
    match = _RELEASE_RE.match(public)
    if not match:
        return (), public, local
    release = tuple(int(p) for p in match.group(1).split("."))
    return release, match.group(2).strip(), local


def release_tuple(version: str) -> Tuple[int, ...]:
    return split_version(version)[0]


def _padded(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def version_ge(found: str, minimum: str) -> bool:
    """Numeric comparison of dotted versions: '535.104.05' >= '450.80.02'."""
    a, b = _padded(release_tuple(found), release_tuple(minimum))
    return a >= b


def versions_match(expected: str, found: Optional[str]) -> bool:
    """Equal versions, ignoring found's local part (+cu113, +cpu) unless expected has one."""
    if found is None:
        return False
    e_rel, e_pre, e_local = split_version(expected)
    f_rel, f_pre, f_local = split_version(found)
    if not e_rel or not f_rel:
        return expected.strip() == found.strip()
    e_rel, f_rel = _padded(e_rel, f_rel)
    if e_rel != f_rel or e_pre != f_pre:
        return False
    return not e_local or e_local == f_local


def major_minor(version: Optional[str]) -> Optional[str]:
    if not version:
        return None
    rel = release_tuple(version)
    if not rel:
        return None
    return "%d.%d" % (rel[0], rel[1] if len(rel) > 1 else 0)


def cudnn_version_str(raw: Optional[int]) -> Optional[str]:
    """torch.backends.cudnn.version(): 8302 -> '8.3.2' (cuDNN < 9), 90100 -> '9.1.0'."""
    if raw is None:
        return None
    raw = int(raw)
    if raw >= 90000:
        return "%d.%d.%d" % (raw // 10000, (raw % 10000) // 100, raw % 100)
    return "%d.%d.%d" % (raw // 1000, (raw % 1000) // 100, raw % 100)


def nccl_version_str(raw: Any) -> Optional[str]:
    """torch.cuda.nccl.version(): (2, 10, 3) in newer torch, 2708 / 21003 in older."""
    if raw is None:
        return None
    if isinstance(raw, (tuple, list)):
        return ".".join(str(int(p)) for p in raw[:3])
    raw = int(raw)
    if raw >= 10000:  # NCCL >= 2.9: major*10000 + minor*100 + patch
        return "%d.%d.%d" % (raw // 10000, (raw % 10000) // 100, raw % 100)
    return "%d.%d.%d" % (raw // 1000, (raw % 1000) // 100, raw % 100)


# ----------------------------------------------------------------------- GPU archs


def normalize_archs(spec: Optional[str]) -> List[str]:
    """'sm_70, 8.0;8.6+PTX 90' -> ['sm_70', 'sm_80', 'sm_86', 'compute_86', 'sm_90']."""
    out: List[str] = []
    if not spec:
        return out
    for item in re.split(r"[\s,;]+", spec.strip()):
        if not item:
            continue
        item = item.lower()
        ptx = item.endswith("+ptx")
        if ptx:
            item = item[: -len("+ptx")]
        match = re.match(r"^(sm_|compute_)?(\d+)(?:\.(\d+))?([af]?)$", item)
        if not match:
            raise ValueError("cannot read GPU arch %r (use sm_80, 8.0 or 8.0+PTX)" % item)
        prefix, major, minor = match.group(1), match.group(2), match.group(3)
        digits = (major + minor if minor is not None else major) + match.group(4)
        names = [(prefix or "sm_") + digits]
        if ptx:
            names.append("compute_" + digits)
        for name in names:
            if name not in out:
                out.append(name)
    return out


def _arch_number(name: str) -> Tuple[str, int, int]:
    kind, _, digits = name.partition("_")
    number = int(digits.rstrip("af"))  # sm_90a: arch-specific features, same number
    return kind, number // 10, number % 10


def arch_supported(capability: Tuple[int, int], archs: Sequence[str]) -> Tuple[bool, str]:
    """Whether code built for `archs` runs on a GPU of `capability`, and how.

    exact sm_XY, else a binary-compatible sm_XZ (same major, Z <= Y), else PTX
    compute_VW <= XY that the driver can JIT-compile.
    """
    major, minor = int(capability[0]), int(capability[1])
    want = "sm_%d%d" % (major, minor)
    if want in archs:
        return True, "exact %s" % want
    compatible = []
    ptx = []
    for name in archs:
        try:
            kind, a_major, a_minor = _arch_number(name)
        except ValueError:
            continue
        if name.endswith("a") and (a_major, a_minor) != (major, minor):
            continue  # sm_90a-style cubins run on exactly that GPU
        if kind == "sm" and a_major == major and a_minor <= minor:
            compatible.append((a_minor, name))
        elif kind == "compute" and (a_major, a_minor) <= (major, minor):
            ptx.append((a_major, a_minor, name))
    if compatible:
        return True, "binary-compatible %s" % max(compatible)[1]
    if ptx:
        return True, "PTX %s (JIT-compiled by the driver)" % max(ptx)[2]
    return False, "%s not in %s" % (want, ",".join(archs) or "(empty list)")


# ------------------------------------------------------------------------ nvidia-smi

GPU_QUERY_FIELDS = ("name", "driver_version", "memory.total", "compute_cap")


def nvidia_smi_path() -> Optional[str]:
    import shutil

    return shutil.which("nvidia-smi") or (
        "/usr/bin/nvidia-smi" if os.access("/usr/bin/nvidia-smi", os.X_OK) else None
    )


def _na(value: str) -> Optional[str]:
    value = value.strip()
    if not value or value.strip("[]").upper() in ("N/A", "NOT SUPPORTED", "UNKNOWN ERROR"):
        return None
    return value


def parse_gpu_csv(text: str, with_compute_cap: bool = True) -> List[dict]:
    """Parse `nvidia-smi --query-gpu=name,driver_version,memory.total[,compute_cap]
    --format=csv,noheader,nounits`. The trailing fields are numeric, so the name is
    everything before them (robust to a comma in a name)."""
    trailing = 3 if with_compute_cap else 2
    gpus = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < trailing + 1:
            raise ValueError("unexpected nvidia-smi line: %r" % line)
        name = ", ".join(parts[: len(parts) - trailing])
        rest = parts[len(parts) - trailing :]
        memory = _na(rest[1])
        gpu = {
            "index": len(gpus),
            "name": name,
            "driver": _na(rest[0]),
            "memory_mib": int(float(memory)) if memory is not None else None,
            "compute_cap": _na(rest[2]) if with_compute_cap else None,
        }
        gpus.append(gpu)
    return gpus


Runner = Callable[..., Any]


def query_gpus(
    runner: Runner = subprocess.run, smi: Optional[str] = None
) -> Tuple[List[dict], dict]:
    """Run nvidia-smi in query mode; falls back to a query without compute_cap for
    drivers that do not know that field (before ~510). Returns (gpus, info)."""
    smi = smi or nvidia_smi_path()
    info: Dict[str, Any] = {"nvidia_smi": smi}
    if smi is None:
        raise FileNotFoundError("nvidia-smi not found")
    base = [smi, "--format=csv,noheader,nounits"]
    proc = runner(
        [*base, "--query-gpu=" + ",".join(GPU_QUERY_FIELDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=60,
    )
    if proc.returncode == 0:
        info["compute_cap_source"] = "nvidia-smi"
        return parse_gpu_csv(proc.stdout, True), info
    first_error = (proc.stdout or "").strip()
    proc = runner(
        [*base, "--query-gpu=" + ",".join(GPU_QUERY_FIELDS[:3])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            "nvidia-smi failed (exit %d): %s" % (proc.returncode, (proc.stdout or "").strip())
        )
    info["compute_cap_source"] = (
        "unavailable on this driver (%s)" % first_error.splitlines()[0][:200]
        if first_error
        else "unavailable on this driver"
    )
    return parse_gpu_csv(proc.stdout, False), info


def nvidia_smi_list_count(runner: Runner = subprocess.run) -> int:
    smi = nvidia_smi_path()
    if smi is None:
        return 0
    try:
        proc = runner(
            [smi, "-L"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    if proc.returncode != 0:
        return 0
    return sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))


def gpu_count() -> Tuple[int, str]:
    """Number of visible GPUs and how it was found: torch if importable, else nvidia-smi -L."""
    try:
        import torch
    except Exception:
        return nvidia_smi_list_count(), "nvidia-smi -L"
    try:
        return int(torch.cuda.device_count()), "torch.cuda.device_count()"
    except Exception:
        return 0, "torch.cuda.device_count() failed"


# ------------------------------------------------------------------ horovod build


def parse_check_build(text: str) -> dict:
    """Parse `horovodrun --check-build` output into
    {version, frameworks, controllers, tensor_operations} (name -> built?)."""
    out: Dict[str, Any] = {
        "version": None,
        "frameworks": {},
        "controllers": {},
        "tensor_operations": {},
    }
    sections = {
        "available frameworks": "frameworks",
        "available controllers": "controllers",
        "available tensor operations": "tensor_operations",
    }
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = re.match(r"^Horovod\s+v?([0-9][^\s:]*)", line)
        if match:
            out["version"] = match.group(1)
            continue
        key = line.rstrip(":").strip().lower()
        if key in sections:
            current = sections[key]
            continue
        match = re.match(r"^\[\s*([xX]?)\s*\]\s+(.+)$", line)
        if match and current is not None:
            out[current][match.group(2).strip()] = bool(match.group(1))
    return out


# -------------------------------------------------------------------- processes


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> List[int]:
    """All descendant pids of pid (Linux /proc walk); children that moved to a new
    session (torchrun workers do) are included, unlike a process-group kill."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces/parens
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: List[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def kill_tree(proc: "subprocess.Popen", grace: float = 1.0) -> None:
    """SIGTERM the process group and all descendants, then SIGKILL what is left."""
    victims = set(descendants(proc.pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(OSError, ProcessLookupError):
            os.killpg(proc.pid, sig)
        victims.update(descendants(proc.pid))
        for pid in victims:
            with contextlib.suppress(OSError, ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM:
            deadline = time.time() + grace
            while time.time() < deadline and proc.poll() is None:
                time.sleep(0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class RunOutcome(object):
    def __init__(self, returncode: Optional[int], output: str, timed_out: bool, duration: float):
        self.returncode = returncode
        self.output = output
        self.timed_out = timed_out
        self.duration = duration


def run_captured(
    cmd: Sequence[str],
    timeout: Optional[float] = None,
    env: Optional[dict] = None,
    echo: bool = False,
    new_session: bool = True,
    cwd: Optional[str] = None,
) -> RunOutcome:
    """Run cmd with stdout+stderr captured (optionally echoed line by line to our stdout).

    On timeout the whole tree is killed; reading never blocks forever even if an
    orphan still holds the pipe."""
    start = time.time()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=new_session,
    )
    chunks: List[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            chunks.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()

    thread = threading.Thread(target=reader)
    thread.daemon = True
    thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        if new_session:
            kill_tree(proc)
        else:
            for pid in descendants(proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
    if new_session and not timed_out:
        # the check is over: whatever it left running in its session is garbage
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    thread.join(timeout=5)
    return RunOutcome(proc.returncode, "".join(chunks), timed_out, time.time() - start)
