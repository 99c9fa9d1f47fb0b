"""The machine line printed at the top of every benchmark table: CPU model, flags, cores, torch, denormal mode."""

from __future__ import annotations

import os
from pathlib import Path

#: Flags that decide which torch CPU kernels run (bf16/AMX paths, AVX-512).
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """Model name and the flags among :data:`FLAGS`, from /proc/cpuinfo (Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return platform.processor() or platform.machine(), []
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown CPU"), [f for f in FLAGS if f in flags]


def machine_line() -> str:
    """One line: CPU, flags, cores, torch version and threads, whether denormals are flushed inside our networks."""
    import torch

    model, flags = cpu_model_and_flags()
    import BrainAgeLib.predict

    if not hasattr(BrainAgeLib.predict, "flush_denormals"):  # this version of the library does not flush
        flush = "not flushed (IEEE default)"
    else:
        from BrainAgeLib.cpu_runtime import denormals_flushed, flush_denormals

        with flush_denormals():
            flush = "flushed on every torch thread" if denormals_flushed() else "NOT flushed on every thread"
    return (f"CPU: {model}; flags: {' '.join(flags) or 'none of ' + '/'.join(FLAGS[:3])}; {os.cpu_count()} cores; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; denormals inside the networks: {flush}")
