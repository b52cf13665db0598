"""Whether this CPU runs onnxruntime's int8 convolutions the way the shipped int8 encoder was checked on.

The int8 encoder (static QDQ: uint8 activations times int8 weights) was calibrated and measured on x86 CPUs with
VNNI (``avx512_vnni`` or ``avx_vnni``), whose dot-product instruction adds u8 x s8 products straight into 32 bits.
Without VNNI onnxruntime's kernels take another path (onnxruntime's documentation recommends 7-bit weights,
``reduce_range``, for better accuracy on such CPUs), and there the shipped encoder's answers drift: on an AVX2 CPU
its features were 0.56 from fp32 instead of 0.20, and captions as served lost 3.9 CIDEr points on the Flickr8k dev
split with only 20 % of them unchanged (55 % with VNNI; ``bench/int8_encoder.py``, docs/inference.md).
"""

from __future__ import annotations

import platform
from pathlib import Path

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """This CPU's feature flags as Linux lists them; empty where ``cpuinfo`` cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def int8_encoder_drifts(machine: str | None = None, flags: set[str] | None = None) -> bool:
    """True on an x86 CPU whose flags are known and include no VNNI: there the int8 encoder's captions move
    (module doc). Elsewhere (VNNI, another architecture, flags unreadable) False: nothing was measured that says
    otherwise, and the int8 encoder stays what it was."""
    machine = (machine or platform.machine()).lower()
    if machine not in X86:
        return False
    flags = cpu_flags() if flags is None else flags
    return bool(flags) and not flags & VNNI_FLAGS
