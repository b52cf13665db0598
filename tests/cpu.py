"""What this CPU can do: onnxruntime's CPU kernels are bit-exact only on the instruction set they ran on."""

from __future__ import annotations

from captionbot.inference.cpu_int8 import VNNI_FLAGS, cpu_flags, int8_encoder_drifts

# The golden answers and the int8 encoder's measured error come from AVX-512 machines with VNNI. On an AVX2-only one
# (stops 27 and 29) the int8 encoder's features were 0.56 from fp32 instead of 0.20 and its captions as served lost
# 3.9 CIDEr points (inference/cpu_int8.py). onnxruntime's u8s8 kernels take another path without VNNI, so an
# AVX-512 CPU without it (expected, not seen) is treated as the AVX2 one for int8.
AVX512 = "avx512f" in cpu_flags()
VNNI = bool(cpu_flags() & VNNI_FLAGS)


def auto_suffix(variants: dict, files: dict) -> str:
    """What ``auto`` adds to a bundle's version on this CPU's CPU provider: ``+int8``, ``+int8-decoder`` where the
    int8 variant's own encoder would drift here, or nothing for a bundle without an int8 variant."""
    if "int8" not in variants:
        return ""
    return "+int8-decoder" if f"{variants['int8']['dir']}/encoder.onnx" in files and int8_encoder_drifts() else "+int8"
