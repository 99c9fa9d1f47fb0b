"""CPU floating-point mode for running networks: denormal floats flushed to zero on every torch thread.

Denormal (subnormal) floats take a slow microcode path on many x86 CPUs (HD-BET ran 27x
slower on a Xeon). ``torch.set_flush_denormal`` sets FTZ/DAZ in the MXCSR register of the
*calling thread only*; torch's OpenMP worker threads keep their own. :func:`flush_denormals`
therefore also runs ``fesetenv`` once on every thread of the caller's OpenMP team (through
the runtime's ``GOMP_parallel`` entry point), and on exit puts the caller's previous
floating-point environment back on all of them, so nothing a caller set up is lost. It works
the same in a fresh process, a worker process and a long-lived one such as Slicer's, and
degrades to the calling thread alone where no OpenMP runtime or C library can be reached.

Only the standard library is imported at module level (torch is imported on use).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Iterator

#: Bytes reserved for a C ``fenv_t`` (32 bytes on x86-64 glibc and macOS).
_FENV_BYTES = 256
#: Names of OpenMP runtimes that implement the GNU ``GOMP_parallel`` entry point.
_OPENMP_NAMES = ("libgomp", "libomp", "libiomp5")


@functools.lru_cache(maxsize=1)
def _fenv_functions():
    """(fegetenv, fesetenv) from the C maths library, or None where there is none."""
    if sys.platform.startswith("win"):
        return None
    for name in ("m", "c"):
        path = ctypes.util.find_library(name)
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            get, put = lib.fegetenv, lib.fesetenv
        except (OSError, AttributeError):
            continue
        get.argtypes = put.argtypes = [ctypes.c_void_p]
        return get, put
    return None


def _loaded_library_paths() -> list[str]:
    """Shared libraries mapped into this process (Linux: /proc/self/maps; else threadpoolctl if installed)."""
    try:
        with open("/proc/self/maps") as handle:
            return sorted({line.split()[-1] for line in handle if "/" in line and ".so" in line})
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [info["filepath"] for info in threadpool_info() if info.get("user_api") == "openmp"]


@functools.lru_cache(maxsize=1)
def _openmp_parallel_functions() -> tuple:
    """``GOMP_parallel`` of every OpenMP runtime loaded with torch (torch must be imported first)."""
    functions = []
    for path in _loaded_library_paths():
        if not os.path.basename(path).startswith(_OPENMP_NAMES):
            continue
        try:
            parallel = ctypes.CDLL(path).GOMP_parallel
        except (OSError, AttributeError):
            continue
        parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        functions.append(parallel)
    return tuple(functions)


def _set_team_environment(env: ctypes.Array, threads: int) -> bool:
    """Install the floating-point environment ``env`` on every thread of this thread's OpenMP team(s)."""
    fenv = _fenv_functions()
    teams = _openmp_parallel_functions()
    if fenv is None or not teams:
        return False
    address = ctypes.cast(fenv[1], ctypes.c_void_p).value
    for parallel in teams:
        parallel(address, ctypes.addressof(env), max(1, threads), 0)
    return True


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[bool]:
    """Run the block with denormals flushed to zero (or, ``enabled=False``, kept) on all torch CPU threads.

    Yields whether the mode could be set; restores the caller's previous mode on exit.
    Usable as a decorator: ``@flush_denormals()``.
    """
    import torch

    fenv = _fenv_functions()
    saved = ctypes.create_string_buffer(_FENV_BYTES)
    if fenv is not None:
        fenv[0](saved)
    supported = torch.set_flush_denormal(enabled)
    threads = torch.get_num_threads()
    if supported and fenv is not None:
        current = ctypes.create_string_buffer(_FENV_BYTES)
        fenv[0](current)
        _set_team_environment(current, threads)
    try:
        yield supported
    finally:
        if fenv is not None:
            fenv[1](saved)
            _set_team_environment(saved, max(threads, torch.get_num_threads()))  # threads started inside too
        elif supported:
            torch.set_flush_denormal(not enabled)


def flushed_share() -> float:
    """Share of a large denormal tensor that ``x * 1`` turns into 0 on this thread's torch threads.

    1.0: every intra-op thread flushes denormals; 0.0: none does.
    """
    import torch

    # a denormal, written as bits (a float conversion on a flushing thread would already give 0);
    # large enough that every intra-op thread takes a share of the multiplication
    x = torch.full((1 << 22,), 0x00200000, dtype=torch.int32).view(torch.float32)
    return float(((x * 1.0) == 0).float().mean())


def denormals_flushed() -> bool:
    """True when every torch intra-op thread of the calling thread flushes denormals to zero."""
    return flushed_share() == 1.0
