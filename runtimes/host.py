"""Facts about the host that backends and ``edgekit doctor`` need: cores, OS, architecture."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

__all__ = ["physical_cores", "default_threads", "THREADS_ENV", "is_macos", "machine"]

THREADS_ENV = "EDGEKIT_THREADS"


@lru_cache(maxsize=None)
def physical_cores() -> int:
    """Physical cores available to this process (not hyper-threads).

    Linux: distinct (physical id, core id) pairs in /proc/cpuinfo among the CPUs this process
    may run on; elsewhere, or when that cannot be read, the usable logical CPU count.
    """
    try:
        usable = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        usable = None
    logical = len(usable) if usable else (os.cpu_count() or 1)
    try:
        cores: set[tuple[str, str]] = set()
        cpu = phys = core = None
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f.read().splitlines() + [""]:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                elif not line.strip():
                    if cpu is not None and core is not None and (usable is None or cpu in usable):
                        cores.add((phys or "0", core))
                    cpu = phys = core = None
        if cores:
            return max(1, min(len(cores), logical))
    except (OSError, ValueError):
        pass
    return max(1, logical)


def default_threads() -> int:
    """Threads a session gets when none are asked for: ``EDGEKIT_THREADS`` when it is set (a
    positive integer: pin every session of a process, e.g. to 1 in CI or beside another busy
    process), else :func:`physical_cores`."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return physical_cores()
    if not raw.isdigit() or int(raw) < 1:
        from edgekit.errors import UsageError

        raise UsageError(f"{THREADS_ENV}={raw!r} is not a positive integer; unset it or set e.g. {THREADS_ENV}=2")
    return int(raw)


def is_macos() -> bool:
    return platform.system() == "Darwin"


def machine() -> str:
    """CPU architecture as the OS names it (x86_64, aarch64, armv7l, arm64)."""
    return platform.machine() or "unknown"
