"""Which code and which machine made a result: the git commit of a checkout and the CPU's model name.

Standard library only, so that the training script and the benchmarks can record them without importing
each other (or torch).
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def code_version(root: Path | None = None) -> dict:
    """The git commit of the code in ``root`` and whether it has uncommitted changes (None for both where
    ``root`` is not a git checkout or git is missing): which code produced a run. Default: this file's folder,
    the project's checkout."""
    root = root or Path(__file__).resolve().parent

    def git(*args):
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "uncommitted_changes": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "uncommitted_changes": None if status is None else bool(status.strip())}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cpus() -> int | None:
    """The CPUs this process may run on (its affinity, e.g. a cluster job's share), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()
