"""The image's entrypoint: a quick look at the host, then exec the command.

    startup_check.py [COMMAND [ARG ...]]      (default: bash)

Standard library only, Python 3.8+. It never blocks and never changes what runs: the
command is exec'd as this process (same PID, exit code and signals) whatever it finds.
Silent when all is well; GPUIMAGES_QUIET=1 mutes it. What it checks, against the facts
baked into the image at build time (/opt/gpuimages/startup.json, from gpuimages' doctor):

- /dev/shm below what DataLoader workers and NCCL need (Docker's default is 64 MiB);
- with GPUs visible (CUDA images): the driver against the image's CUDA (supported,
  minor-version compatibility and its limits, too old) with the fix and the nearest tag
  that fits; each GPU's compute capability against the image's archs ("no kernel image
  is available" predicted), naming a variant that has kernels for it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

FACTS = os.environ.get("GPUIMAGES_STARTUP_FACTS", "/opt/gpuimages/startup.json")
SHM = "/dev/shm"
SMI_TIMEOUT_S = 5
SMI_FIELDS = ("driver_version", "name", "compute_cap")
PREFIX = "gpuimages: "


def driver_tuple(version):
    return tuple(int(p) for p in re.findall(r"\d+", version))


def arch_of(cap):
    """'8.6' -> 'sm_86'; None for anything else (old drivers do not report it)."""
    m = re.fullmatch(r"(\d+)\.(\d)", cap.strip())
    return "sm_%d%s" % (int(m.group(1)), m.group(2)) if m else None


def parse_smi(text):
    """Rows of `nvidia-smi --query-gpu=driver_version,name[,compute_cap] --format=csv,noheader`."""
    gpus = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not re.fullmatch(r"\d+(\.\d+)*", fields[0]):
            continue
        arch = arch_of(fields[2]) if len(fields) > 2 else None
        gpus.append({"index": len(gpus), "driver": fields[0], "name": fields[1], "arch": arch})
    return gpus


def query_smi(run=subprocess.run):
    """The GPUs nvidia-smi lists, [] when there is none or it fails (never raises)."""
    fields = list(SMI_FIELDS)
    while True:
        argv = ["nvidia-smi", "--query-gpu=" + ",".join(fields), "--format=csv,noheader"]
        try:
            proc = run(argv, capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            return []
        if proc.returncode == 0:
            return parse_smi(proc.stdout)
        if "compute_cap" in fields and "compute_cap" in (proc.stdout + proc.stderr):
            fields.remove("compute_cap")  # drivers older than R510
            continue
        return []


def shm_bytes(path=SHM):
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def size_text(n):
    return "%.1f GiB" % (n / float(1 << 30)) if n >= 1 << 30 else "%d MiB" % (n // (1 << 20))


def shm_warnings(facts, size):
    shm = facts.get("shm") or {}
    need = int(shm.get("min_bytes", 1 << 30))
    if size is None or size >= need:
        return []
    return [
        "%s is %s, below %s: DataLoader workers and NCCL fail with 'No space left on "
        "device' or a bus error. %s" % (SHM, size_text(size), size_text(need), shm.get("fix", ""))
    ]


def band_for(bands, driver):
    found = None
    for band in bands:
        if driver_tuple(band["from"]) <= driver_tuple(driver):
            found = band
    return found


def driver_warnings(facts, gpus):
    if not gpus:
        return []
    driver = gpus[0]["driver"]
    band = band_for(facts.get("driver_bands") or [], driver)
    if band is None or band["verdict"] == "supported":
        return []
    text = "driver %s: %s. %s" % (
        driver,
        band["verdict"],
        band["detail"].replace("{driver}", driver),
    )
    fits = band.get("fits") or []
    if fits:
        text += " Tags that fit this driver: %s." % ", ".join(fits)
    return [text]


def arch_warnings(facts, gpus):
    table = facts.get("arch_verdicts") or {}
    archs = facts.get("archs") or []
    out = []
    seen = set()
    for gpu in gpus:
        arch = gpu["arch"]
        if arch is None or arch in seen:
            continue
        seen.add(arch)
        entry = table.get(arch)
        if entry is None:
            if arch not in archs:
                out.append(
                    "GPU %d %s (%s): not in this image's archs (%s) nor in its table; torch "
                    "may fail with 'no kernel image is available for execution on the device'."
                    % (gpu["index"], gpu["name"], arch, " ".join(archs))
                )
            continue
        if entry["status"] != "unsupported":
            continue
        text = "GPU %d %s: %s" % (gpu["index"], gpu["name"], entry["detail"])
        if entry.get("variants"):
            text += " Matrix variants with its kernels: %s." % ", ".join(entry["variants"])
        out.append(text)
    return out


def load_facts(path=FACTS):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def findings(facts, environ=None, smi=query_smi, shm=shm_bytes):
    """Every warning for this container (empty when all is well)."""
    environ = os.environ if environ is None else environ
    if facts is None:
        return []
    out = shm_warnings(facts, shm())
    if facts.get("cuda", "cpu") != "cpu" and environ.get("NVIDIA_VISIBLE_DEVICES") != "void":
        gpus = smi()
        out += driver_warnings(facts, gpus)
        out += arch_warnings(facts, gpus)
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv) or ["bash"]
    if os.environ.get("GPUIMAGES_QUIET", "") not in ("1", "true", "yes"):
        try:
            lines = findings(load_facts())
        except Exception as exc:  # a bug here must never keep the command from running
            lines = [
                "start-up check failed (%s: %s); running the command anyway."
                % (type(exc).__name__, exc)
            ]
        if lines:
            for line in lines:
                sys.stderr.write(PREFIX + line + "\n")
            sys.stderr.write(PREFIX + "(GPUIMAGES_QUIET=1 mutes these lines)\n")
            sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write("%s: %s\n" % (argv[0], exc.strerror))
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
