"""Automatic CPU precision: bfloat16 + channels_last where the CPU runs bfloat16 natively and a model's
ages stay within ``TOLERANCE_Y`` of float32, else float32.

The check is made once per (model package, CPU, torch) on the first scans a predictor sees
(both precisions on the same batch) and remembered in the user cache, so later runs start
with the answer. Also: the CPU's model name and instruction-set flags, for benchmark headers.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path

#: Largest |bf16 age - fp32 age| (years) for which bf16 is used.
TOLERANCE_Y = 0.1
#: Instruction-set flags that matter for torch's CPU kernels.
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
_DECISIONS = "cpu_precision.json"


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and its flags among :data:`RELEVANT_FLAGS` (Linux /proc/cpuinfo; else platform)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return fields.get("model name") or platform.processor() or platform.machine(), [f for f in RELEVANT_FLAGS if f in flags]


def native_bf16() -> bool:
    """True when the CPU has bfloat16 arithmetic (AVX512-BF16 or AMX), so bf16 is not emulated."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return bool({"avx512_bf16", "amx_bf16"} & set(cpu_model_and_flags()[1]))


def decision_key(fold_sha256: list[str]) -> str:
    """Identifies a (weights, CPU, torch) combination."""
    import torch

    model, flags = cpu_model_and_flags()
    text = json.dumps([fold_sha256, model, flags, torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _decisions_path() -> Path:
    from .user_cache import cache_dir

    return cache_dir() / _DECISIONS


def recorded_precision(key: str) -> str | None:
    """The precision chosen earlier for ``key``, if any."""
    try:
        return json.loads(_decisions_path().read_text()).get(key, {}).get("precision")
    except (OSError, ValueError, AttributeError):
        return None


def record_precision(key: str, precision: str, difference_y: float) -> None:
    """Remember a choice (best effort: an unwritable cache only means the check is made again)."""
    from .io import atomic_path

    path = _decisions_path()
    try:
        decisions = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        decisions = {}
    model, flags = cpu_model_and_flags()
    decisions[key] = {
        "precision": precision,
        "max_difference_y": round(float(difference_y), 5),
        "cpu": model,
        "flags": flags,
        "checked": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(decisions, indent=2))
    except OSError:
        pass
