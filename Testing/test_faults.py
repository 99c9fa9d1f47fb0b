"""Issue 13, item 3: faults during a batch lose nothing already done, and each error says what to do.

The batches run ``brainage predict`` in-process (``BrainAgeLib.cli.main``) on three small synthetic
heads (9 mm voxels, every check passed) with the tiny ``small_package`` model, one scan per network
batch, so each finished scan is saved before the next. Tests run as root here, where permission bits
bind nothing, so a read-only folder or a full disk is made by the OS error the writer's system call
gets (``tempfile.mkstemp``, the CSV write); a folder below a regular file is unwritable for anyone.
"""

import csv
import errno
import hashlib
import http.server
import io
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from BrainAgeLib import model_registry, predict
from BrainAgeLib.cli import predict as cli_predict
from BrainAgeLib.skullstrip import none as skullstrip_none
from BrainAgeLib.cli import main
from BrainAgeLib.errors import ChecksumError, ModelPackageError, SkullStripError
from BrainAgeLib.io import save_nifti
from BrainAgeLib.package import load_package
from BrainAgeLib.predict import Predictor
from conftest import make_volume

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT / "BrainAge" / "Scripts" / "batch.py"


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """Three small synthetic heads (16 x 18 x 12 voxels of 9 mm) that pass every input check and QC rule."""
    folder = tmp_path_factory.mktemp("heads")
    paths = []
    for i in range(3):
        path = folder / f"sub-0{i + 1}_T1w.nii.gz"
        save_nifti(make_volume((16, 18, 12), (9.0, 9.0, 9.0), seed=i), path)
        paths.append(path)
    return paths


def predict_cli(inputs, out, package, *extra) -> int:
    return main(["predict", *map(str, inputs), "--model", str(package), "--skull-strip", "none",
                 "--out", str(out), "--batch-size", "1", *extra])


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def temp_files(folder: Path) -> list[str]:
    """What atomic writes leave behind when they fail half-way (``.<name>.XXXX<suffix>``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def has_age(row: dict) -> bool:
    return row.get("predicted_age", "") not in ("", "nan") and not row.get("error")


def deny_writes(monkeypatch, folder: Path, code: int, after: int = 0) -> None:
    """Files created in ``folder`` (by ``tempfile.mkstemp``/``mkdtemp``) fail with ``code`` after ``after`` of them."""
    created = []

    def guard(real):
        def make(*args, **kwargs):  # (suffix, prefix, dir, ...) for both
            where = kwargs.get("dir", args[2] if len(args) > 2 else None) or tempfile.gettempdir()
            if Path(where).resolve() == folder.resolve():
                created.append(1)
                if len(created) > after:
                    raise OSError(code, os.strerror(code), str(folder))
            return real(*args, **kwargs)
        return make

    monkeypatch.setattr(tempfile, "mkstemp", guard(tempfile.mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", guard(tempfile.mkdtemp))


def model_must_not_load(monkeypatch) -> None:
    monkeypatch.setattr(cli_predict, "Predictor", lambda *a, **k: pytest.fail("the model was loaded: work started"))


# --- the output folder ----------------------------------------------------------------------------


@pytest.mark.parametrize("code, says", [
    (errno.EACCES, "permission denied"),
    (errno.EROFS, "the file system is read-only"),
    (errno.ENOSPC, "the disk is full"),
])
def test_an_unwritable_output_folder_is_refused_before_any_work(heads, small_package, tmp_path, monkeypatch, capsys, code, says):
    folder = tmp_path / "results"
    folder.mkdir()
    deny_writes(monkeypatch, folder, code)
    model_must_not_load(monkeypatch)
    assert predict_cli(heads, folder / "results.csv", small_package) == 2
    err = capsys.readouterr().err
    assert f"cannot write the results to {folder / 'results.csv'}: {says}" in err
    assert "Nothing was run" in err and "choose an output in a folder you can write to" in err
    assert list(folder.iterdir()) == []


def test_an_output_path_below_a_file_is_refused_before_any_work(heads, small_package, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    model_must_not_load(monkeypatch)
    assert predict_cli(heads, blocker / "results.csv", small_package) == 2
    assert "a part of the path is a file, not a folder" in capsys.readouterr().err
    batch = runpy.run_path(str(BATCH), run_name="brainage_batch")  # the Slicer batch script refuses the same way
    assert batch["run"](["--input", str(heads[0]), "--model", str(small_package), "--out", str(blocker / "r.csv"),
                         "--engine", "core", "--skull-strip", "none"]) == 2
    err = capsys.readouterr().err
    assert "cannot write the results" in err and "Traceback" not in err


def test_an_output_folder_turning_read_only_mid_batch_keeps_the_rows_done(heads, small_package, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    out = folder / "results.csv"
    deny_writes(monkeypatch, folder, errno.EROFS, after=2)  # the start's check and scan 1's save pass
    assert predict_cli(heads, out, small_package) == 4
    err = capsys.readouterr().err
    assert f"could not save the results to {out}: the file system is read-only" in err
    assert "the 1 row was saved before and is kept there" in err and "free space or make the folder writable" in err
    assert f"NOT SAVED {heads[1]}: predicted_age " in err  # the finished scan whose row could not be written
    rows = read_rows(out)
    assert [r["source"] for r in rows] == [str(heads[0])] and has_age(rows[0])
    assert temp_files(folder) == []


def test_a_disk_filling_up_mid_batch_keeps_the_rows_done(heads, small_package, tmp_path, monkeypatch, capsys):
    to_csv, writes = pd.DataFrame.to_csv, []

    def filling_disk(self, path, *args, **kwargs):
        writes.append(path)
        if len(writes) == 1:
            return to_csv(self, path, *args, **kwargs)
        Path(path).write_text("source,fold_ages\n/half-writ")  # part of the table reached the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", filling_disk)
    out = tmp_path / "results.csv"
    assert predict_cli(heads, out, small_package) == 4
    err = capsys.readouterr().err
    assert "the disk is full (no space left on device)" in err and "the 1 row was saved before and is kept there" in err
    monkeypatch.undo()
    rows = read_rows(out)
    assert [r["source"] for r in rows] == [str(heads[0])] and has_age(rows[0])
    assert temp_files(tmp_path) == []  # the half-written temp file is gone


def test_two_runs_writing_the_same_output_never_leave_a_torn_file(heads, small_package, tmp_path, capsys):
    """Two runs at once on one --out: each either finishes or is refused at its start because the other is
    writing; at every moment the file holds whole rows of one run, and in the end one run's whole table."""
    copies = tmp_path / "copies"
    copies.mkdir()
    runs = {"a": [str(p) for p in heads], "b": [str(shutil.copy(p, copies / p.name)) for p in heads[:2]]}
    out = tmp_path / "results.csv"
    codes = {}
    threads = [threading.Thread(target=lambda k=k: codes.__setitem__(k, predict_cli(runs[k], out, small_package, "--overwrite")))
               for k in runs]
    for thread in threads:
        thread.start()
    seen = set()
    while any(t.is_alive() for t in threads):
        if out.exists():
            seen.add(out.read_bytes())
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    seen.add(out.read_bytes())
    assert 0 in codes.values() and set(codes.values()) <= {0, 2}, codes
    if 2 in codes.values():
        assert "another brainage run is writing" in capsys.readouterr().err
    for snapshot in seen:  # every state the file was ever seen in: whole rows of one run, in its order
        sources = pd.read_csv(io.BytesIO(snapshot))["source"].tolist()
        run = runs["a"] if sources[0] in runs["a"] else runs["b"]
        assert sources == run[: len(sources)], snapshot
        assert all(has_age(r) for r in csv.DictReader(io.StringIO(snapshot.decode())))
    assert [r["source"] for r in read_rows(out)] in [runs[k] for k, code in codes.items() if code == 0]
    assert temp_files(tmp_path) == []


# --- the model cache ------------------------------------------------------------------------------


@pytest.fixture()
def unwritable_cache(tmp_path, monkeypatch):
    """BRAINAGE_CACHE inside a regular file: no one can create anything there."""
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("BRAINAGE_CACHE", str(blocker / "cache"))
    return blocker / "cache"


def test_an_unwritable_model_cache_does_not_stop_predictions(heads, small_package, tmp_path, unwritable_cache, monkeypatch):
    monkeypatch.setattr(predict, "native_bf16", lambda: True)  # precision 'auto' then reads and records its choice there
    out = tmp_path / "results.csv"
    assert predict_cli(heads[:1], out, small_package, "--precision", "auto") == 0
    assert has_age(read_rows(out)[0])


def test_an_unwritable_model_cache_refuses_installs_and_says_where_to_put_it(small_package, unwritable_cache):
    entry = model_registry.RegistryEntry(name="small", version="1", url="http://127.0.0.1:9/never-reached", sha256="0" * 64)
    for install in (lambda: model_registry.download_model(entry), lambda: model_registry.import_package(small_package)):
        with pytest.raises(ModelPackageError) as refused:
            install()
        message = str(refused.value)
        assert f"the model cache {unwritable_cache / 'models'} cannot be written" in message
        assert "Nothing was installed; set BRAINAGE_CACHE to a folder you can write to" in message


def test_a_read_only_model_cache_refuses_a_download(small_package, user_cache, monkeypatch):
    (user_cache / "models").mkdir(parents=True)
    deny_writes(monkeypatch, user_cache / "models", errno.EACCES)
    entry = model_registry.RegistryEntry(name="small", version="1", url="http://127.0.0.1:9/never-reached", sha256="0" * 64)
    with pytest.raises(ModelPackageError, match="cannot be written: permission denied"):
        model_registry.download_model(entry)


@pytest.fixture()
def model_server(small_package, tmp_path, monkeypatch):
    """A local HTTP server for the small package as a .zip: whole (/whole), or cut in half after announcing
    the whole length (/cut), or cut in half with no length announced (/unsized)."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    archive = tmp_path / "small.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(Path(small_package).iterdir()):
            zf.write(f, f"small/{f.name}")
    payload = archive.read_bytes()
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            served.append(self.path)
            body = payload if self.path == "/whole" else payload[: len(payload) // 2]
            self.send_response(200)
            if self.path != "/unsized":
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(body)  # HTTP/1.0: the connection closes after this

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", hashlib.sha256(payload).hexdigest(), served
    server.shutdown()
    server.server_close()


def test_an_interrupted_download_is_removed_and_the_next_one_installs(model_server, user_cache):
    base, sha256, served = model_server

    def entry(path):
        return model_registry.RegistryEntry(name="small", version="1", url=base + path, sha256=sha256)

    models = user_cache / "models"
    with pytest.raises(ModelPackageError, match=r"was interrupted after \d+ of \d+ bytes .*nothing was installed"):
        model_registry.download_model(entry("/cut"))
    assert list(models.iterdir()) == []  # the partial file and its temp folder are gone
    with pytest.raises(ChecksumError, match="sha256 does not match the registry"):
        model_registry.download_model(entry("/unsized"))  # a short file that claimed no length: the checksum refuses it
    assert list(models.iterdir()) == []
    installed = model_registry.download_model(entry("/whole"))
    assert installed == models / "small-1" and [p.name for p in models.iterdir()] == ["small-1"]
    assert len(load_package(installed).models) == 2
    assert model_registry.download_model(entry("/cut")) == installed and served == ["/cut", "/unsized", "/whole"]


# --- a skull-strip backend failing mid-batch ------------------------------------------------------


@pytest.mark.parametrize("failure", [
    SkullStripError("HD-BET found no brain in this scan"),
    IndexError("index 17 is out of bounds for axis 0 with size 16"),
    MemoryError(),
], ids=["SkullStripError", "IndexError", "MemoryError"])
def test_a_skull_strip_backend_failing_mid_batch_costs_only_its_scan(heads, small_package, tmp_path, monkeypatch, failure):
    real, calls = skullstrip_none.predict_mask, []

    def flaky(data, spacing, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise failure
        return real(data, spacing, **kwargs)

    monkeypatch.setattr(skullstrip_none, "predict_mask", flaky)
    out = tmp_path / "results.csv"
    assert predict_cli(heads, out, small_package) == 1
    rows = read_rows(out)
    assert [r["source"] for r in rows] == [str(p) for p in heads]
    assert has_age(rows[0]) and has_age(rows[2]) and not has_age(rows[1])
    assert rows[1]["error"].startswith("SkullStripError: ")
    if not isinstance(failure, SkullStripError):
        assert f"the none skull strip failed on this scan ({type(failure).__name__}" in rows[1]["error"]
        assert "Try another skull-strip backend (--skull-strip)" in rows[1]["error"]


# --- SIGINT and SIGTERM ---------------------------------------------------------------------------


def assert_interrupted_table(out, heads, signame):
    rows = read_rows(out)
    assert [r["source"] for r in rows] == [str(p) for p in heads]
    assert has_age(rows[0])  # done before the signal: saved
    for row in rows[1:]:
        assert row["error"].startswith(f"not run: the batch was interrupted by {signame}") and not has_age(row)


def test_sigint_during_a_batch_saves_the_rows_done_and_exits_130(heads, small_package, tmp_path, monkeypatch, capsys):
    forward, calls = Predictor.forward, []

    def forward_then_ctrl_c(self, arrays):
        calls.append(1)
        if len(calls) == 2:  # the second scan's network: the user presses Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(60)
        return forward(self, arrays)

    monkeypatch.setattr(Predictor, "forward", forward_then_ctrl_c)
    out = tmp_path / "results.csv"
    before = signal.getsignal(signal.SIGINT)
    try:
        code = predict_cli(heads, out, small_package)
    except KeyboardInterrupt:
        pytest.fail("SIGINT escaped brainage predict as KeyboardInterrupt")
    assert code == 130
    assert "interrupted by SIGINT: 1 of 3 scans done; their rows are saved" in capsys.readouterr().err
    assert_interrupted_table(out, heads, "SIGINT")
    assert signal.getsignal(signal.SIGINT) is before  # the handler is handed back


def test_sigterm_from_outside_saves_the_rows_done_and_exits_143(heads, small_package, tmp_path):
    """A real `brainage predict` process, killed with SIGTERM (kill, docker stop) while its second scan runs."""
    wrapper = textwrap.dedent('''
        import sys, time
        from pathlib import Path
        from BrainAgeLib.cli import main
        from BrainAgeLib.predict import Predictor
        forward, calls = Predictor.forward, []
        def slow_forward(self, arrays):
            calls.append(1)
            if len(calls) == 2:  # the second scan's network: tell the test, then take long
                Path(sys.argv[1]).write_text("busy")
                time.sleep(600)
            return forward(self, arrays)
        Predictor.forward = slow_forward
        sys.exit(main(sys.argv[2:]))
    ''')
    out, busy = tmp_path / "results.csv", tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", wrapper, str(busy), "predict", *map(str, heads), "--model", str(small_package),
                             "--skull-strip", "none", "--batch-size", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not busy.exists() and proc.poll() is None:
            time.sleep(0.1)
        assert busy.exists(), proc.communicate()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted by SIGTERM: 1 of 3 scans done" in stderr and "Traceback" not in stderr
    assert_interrupted_table(out, heads, "SIGTERM")


def test_sigterm_during_the_slicer_batch_script_saves_the_rows_done_and_exits_143(heads, small_package, tmp_path, monkeypatch):
    def sigterm_reached_the_test(signum, frame):
        raise AssertionError("SIGTERM was not handled by batch.py")

    def forward_then_sigterm(self, arrays):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)

    monkeypatch.setattr(Predictor, "forward", forward_then_sigterm)
    previous = signal.signal(signal.SIGTERM, sigterm_reached_the_test)
    broken = tmp_path / "sub-00_T1w.nii.gz"
    broken.write_bytes(b"\x1f\x8b\x08 truncated")
    out = tmp_path / "results.csv"
    try:
        batch = runpy.run_path(str(BATCH), run_name="brainage_batch")
        code = batch["run"](["--input", str(broken), *map(str, heads[:2]), "--model", str(small_package), "--out", str(out),
                             "--engine", "core", "--skull-strip", "none"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143
    rows = read_rows(out)
    assert [r["source"] for r in rows] == [str(broken), str(heads[0]), str(heads[1])]
    assert rows[0]["error"].startswith("CorruptFileError: ")  # finished (as a failure) before the signal: saved
    assert all(r["error"].startswith("not run: the batch was interrupted by SIGTERM") for r in rows[1:])
