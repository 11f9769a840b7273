"""Number formats chosen by the hardware: half precision only where the device computes it natively.

On a CPU without AVX512-BF16 or AMX, bfloat16 is emulated and several times slower than float32 (vLLM's CPU
backend falls back from oneDNN to plain torch kernels; measured in docs/PERFORMANCE.md), so ``auto`` never
assumes a format: it asks the device.
"""

from __future__ import annotations

FORMATS = ("auto", "float32", "bfloat16", "float16")

# Private torch helpers; a helper missing from a torch build counts as "no".
CPU_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def choose_format(setting: str, device: str) -> tuple[str, str]:
    """The number format for ``setting`` on ``device`` ("cpu" or "cuda..."), and why, for the log.

    ``auto`` takes bfloat16 on a GPU that has it (else float16, the GPU's native half format) and on a CPU
    with AVX512-BF16 or AMX; float32 on any other CPU. An explicit format is taken as it is.
    """
    if setting not in FORMATS:
        raise ValueError(f"number format must be one of {FORMATS}, not {setting!r}")
    if setting != "auto":
        return setting, "set explicitly"
    import torch

    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "the GPU computes bfloat16 natively"
        return "float16", "the GPU has no bfloat16; float16 is its native half format"
    native = [name.strip("_").removeprefix("is_").removesuffix("_supported") for name in CPU_BF16_CHECKS
              if getattr(torch.cpu, name, lambda: False)()]
    if native:
        return "bfloat16", f"the CPU computes bfloat16 natively ({', '.join(native)})"
    return "float32", "the CPU has no native bfloat16 (no AVX512-BF16 or AMX): emulated bfloat16 is slower"
