"""Run one case in a worker process and watch it without blocking: the panel's background job.

The caller (Slicer's GUI thread) starts a :class:`CaseJob`, then calls :meth:`CaseJob.poll` from a
timer: it returns the progress reported since the last call and never waits. :meth:`CaseJob.cancel`
kills the worker and everything it started (PythonSlicer is a launcher: killing only it would leave
the real Python running), so Cancel takes effect at once, in the middle of a skull strip too.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .case_run import CaseOutputs, load_outputs, save_input
from .case_worker import parse_progress

WORKER = Path(__file__).resolve().with_name("case_worker.py")
LOG_LINES = 200  # worker output kept for the error message and the log


class CaseJobError(RuntimeError):
    """The worker failed; the message is the one it reported (or the end of its output)."""


class CaseJob:
    """One scan predicted by ``python case_worker.py`` in a fresh folder."""

    def __init__(self, python: list[str], array_kji, ijk_to_ras, request: dict, *, env: dict | None = None,
                 work_dir: str | os.PathLike | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="brainage-job-", dir=work_dir))
        self.input_kji, self.ijk_to_ras, self.name = array_kji, ijk_to_ras, request.get("name", "")
        save_input(self.folder, array_kji, ijk_to_ras)
        (self.folder / "request.json").write_text(json.dumps(request))
        self.log: list[str] = []
        self.cancelled = False
        self.started = time.monotonic()
        self._lines: queue.Queue = queue.Queue()
        self.process = subprocess.Popen(
            [*python, str(WORKER), str(self.folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", **_own_process_group(),
        )
        self._reader = threading.Thread(target=self._read, name="brainage-case-job", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self.process.wait()
        self._lines.put(None)  # end of output

    @property
    def running(self) -> bool:
        return self._reader.is_alive() or not self._lines.empty()

    def poll(self) -> list[tuple[float, str]]:
        """Progress (fraction, text) reported since the last call; other lines go to ``log``. Never blocks."""
        reported = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return reported
            if line is None:
                continue
            step = parse_progress(line)
            if step:
                reported.append(step)
            else:
                self.log = (self.log + [line])[-LOG_LINES:]

    def cancel(self) -> None:
        """Kill the worker and its children now; :meth:`outputs` then raises nothing but says cancelled."""
        self.cancelled = True
        _kill_tree(self.process)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ended (scripts and tests); True when it did."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def outputs(self) -> CaseOutputs:
        """The finished case (call once :attr:`running` is False)."""
        self.poll()
        error_file = self.folder / "error.json"
        if error_file.is_file():
            raise CaseJobError(json.loads(error_file.read_text())["error"])
        if self.process.returncode != 0 or not (self.folder / "result.json").is_file():
            tail = "\n".join(self.log[-15:])
            raise CaseJobError(f"the prediction process ended with exit code {self.process.returncode}:\n{tail}")
        return load_outputs(self.folder, self.ijk_to_ras, self.name)

    def cleanup(self) -> None:
        """Remove the job folder (after the outputs were read, or when abandoning the job)."""
        if self.process.poll() is None:
            _kill_tree(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def _own_process_group() -> dict:
    """Start the worker as the leader of a new process group, so one kill reaches its children."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _kill_tree(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
