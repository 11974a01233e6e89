"""What this machine's CPU offers the computation: usable cores, native bfloat16 products.

No TensorFlow import: the evaluation's thread counts use it too, and ``tfrs-movies`` commands
that never train should not pay TensorFlow's start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# x86 flags (as Linux lists them) of the instructions oneDNN multiplies bfloat16 matrices with:
# AVX-512 BF16 dot products (Cooper Lake, Zen 4 and later) and AMX tiles (Sapphire Rapids).
BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether TensorFlow's CPU kernels multiply bfloat16 matrices in hardware here.

    True when the CPU has one of :data:`BFLOAT16_CPU_FLAGS` and TensorFlow's oneDNN kernels are
    on (``TF_ENABLE_ONEDNN_OPTS`` is not ``0``); elsewhere bfloat16 products are emulated and
    slower than float32 ones.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``; None reads it (absent, as off Linux: False).
    """
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip() == "0":
        return False
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return bool(BFLOAT16_CPU_FLAGS & set(value.split()))
    return False
