"""What this CPU can do: onnxruntime's CPU kernels are bit-exact only on the instruction set they ran on."""

from __future__ import annotations

from pathlib import Path


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux), empty where /proc/cpuinfo is absent."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


# The golden answers and the int8 encoder's measured error come from AVX-512 machines with VNNI. On an AVX2-only one
# (stop 27) the int8 encoder's features were 0.56 from fp32 instead of 0.20; the cause (int8 kernels) was not pinned
# down. onnxruntime's u8s8 kernels take another path without VNNI, so an AVX-512 CPU without it (stop 28's note:
# expected, not seen) is treated as the AVX2 one for int8.
AVX512 = "avx512f" in cpu_flags()
VNNI = bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})
