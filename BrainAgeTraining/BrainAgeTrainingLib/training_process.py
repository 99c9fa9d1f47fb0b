"""Run ``brainage train`` as a subprocess: stream its log, report progress, cancel it.

This is the Slicer-free part of ``BrainAgeTrainingLogic``: inside Slicer the
interpreter is ``PythonSlicer``; elsewhere ``sys.executable``. Cancelling stops the
whole process tree: on POSIX the child's process group (DataLoader / preparation
workers included), on Windows ``taskkill /T`` (``PythonSlicer.exe`` is a launcher,
so killing it alone would leave the real Python running). Progress comes from the
``[progress] <fraction>`` lines the trainer prints after every epoch.

A reader thread only queues the child's output; the callbacks run on the thread
that polls the process (``drain``, ``running``, ``wait``), so inside Slicer a main-thread
timer can hand them to Qt widgets safely.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_PROGRESS = re.compile(r"^\[progress\]\s+([0-9.]+)")


def python_executable() -> str:
    """PythonSlicer inside Slicer (when on PATH), else the running interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def library_paths() -> list[str]:
    """Folders holding BrainAgeLib and BrainAgeTrainingLib (inside Slicer: the extension's module folders)."""
    import BrainAgeLib
    import BrainAgeTrainingLib

    return list(dict.fromkeys(str(Path(m.__file__).resolve().parent.parent) for m in (BrainAgeLib, BrainAgeTrainingLib)))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the training child: unbuffered output, the libraries first on PYTHONPATH.

    PythonSlicer does not see an extension's module folders by itself (Slicer adds them to
    ``sys.path`` at start-up, not to the launcher's settings), so the child gets them explicitly.
    """
    env = {**os.environ, **(extra or {}), "PYTHONUNBUFFERED": "1"}
    paths = library_paths() + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def train_command(data: list[str], out: str, config: str | None = None, resume: bool = False,
                  extra: list[str] | None = None, python: str | None = None) -> list[str]:
    """The command line that trains (same code path as ``brainage train``)."""
    cmd = [python or python_executable(), "-u", "-m", "BrainAgeLib.cli", "train", "--data", *map(str, data),
           "--out", str(out), "--no-progress"]
    if config:
        cmd += ["--config", str(config)]
    if resume:
        cmd.append("--resume")
    return cmd + list(extra or [])


@dataclass
class TrainingProcess:
    """A running training subprocess with line callbacks."""

    command: list[str]
    on_line: Callable[[str], None] | None = None
    on_progress: Callable[[float], None] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    lines: list[str] = field(default_factory=list)
    progress: float = 0.0
    cancelled: bool = False

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._queue: queue.Queue[str] = queue.Queue()

    def start(self) -> "TrainingProcess":
        env = child_env(self.env)
        kwargs = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      bufsize=1, env=env, cwd=self.cwd, **kwargs)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        """Reader thread: queue the child's lines; no callback runs here."""
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            self._queue.put(raw.rstrip("\n"))

    def drain(self) -> int:
        """Hand the queued lines to ``on_line`` / ``on_progress`` on the calling thread; returns how many."""
        count = 0
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return count
            count += 1
            self.lines.append(line)
            match = _PROGRESS.match(line)
            if match:
                self.progress = float(match.group(1))
                if self.on_progress:
                    self.on_progress(self.progress)
            if self.on_line:
                self.on_line(line)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Whether the child still runs (queued output is delivered first)."""
        self.drain()
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end, delivering the output on this thread; returns the exit status."""
        assert self._proc is not None, "start() first"
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._proc.poll() is None:
            self.drain()
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.command, timeout)
            time.sleep(0.05)
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.drain()
        return self._proc.returncode

    def cancel(self, grace_seconds: float = 5.0, hard: bool = False) -> None:
        """Stop the whole process tree: politely first (POSIX SIGTERM), then by force after ``grace_seconds``."""
        if not self.running:
            return
        self.cancelled = True
        assert self._proc is not None
        kill_tree(self._proc.pid, hard=hard or os.name != "posix")
        deadline = time.monotonic() + grace_seconds
        while self._proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._proc.poll() is None:
            kill_tree(self._proc.pid, hard=True)
        self.wait(timeout=30)


def kill_tree(pid: int, hard: bool = False, system: str | None = None, run=subprocess.run) -> None:
    """Stop a process and every process it started.

    POSIX: signal the process group the child leads (``start_new_session``). Windows: ``taskkill /T /F``,
    because ``Popen.kill`` would stop only the ``PythonSlicer.exe`` launcher and leave its Python child
    running (SlicerMONAIAuto3DSeg's process.py kills the children for the same reason).
    """
    if (system or os.name) == "posix":
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL if hard else signal.SIGTERM)
        except ProcessLookupError:
            pass
    else:
        run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)


def run_training_subprocess(data: list[str], out: str | Path, config: str | None = None, resume: bool = False,
                            on_line: Callable[[str], None] | None = print, **kwargs) -> TrainingProcess:
    """Start a training subprocess and return it (call ``.wait()`` to block)."""
    return TrainingProcess(train_command(data, str(out), config, resume), on_line=on_line, **kwargs).start()
