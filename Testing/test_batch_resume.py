"""--resume bookkeeping (BrainAgeLib.batch_resume): the journal, content hashes, which rows of an earlier run hold."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from BrainAgeLib.batch_resume import HASH_COLUMN, RowJournal, case_row, content_sha256, earlier_rows, journal_paths
from BrainAgeLib.errors import OutputError


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    paths = []
    for i in range(3):
        path = folder / f"sub-0{i + 1}_T1w.nii.gz"
        path.write_bytes(f"scan {i}".encode() * 1000)
        paths.append(str(path))
    return paths


def row(source: str, age: float | None = 50.0, error: str | None = None) -> dict:
    return case_row({"source": source, "predicted_age": age, "error": error}, content_sha256(source), source)


def test_the_hash_is_the_sha256_of_the_bytes_and_follows_source(inputs, tmp_path):
    assert content_sha256(inputs[0]) == hashlib.sha256(open(inputs[0], "rb").read()).hexdigest()
    assert content_sha256(tmp_path / "missing.nii.gz") == ""
    assert list(row(inputs[0])) == ["source", HASH_COLUMN, "predicted_age", "error"]


def test_rows_of_a_killed_run_hold_unless_the_file_changed(inputs, tmp_path):
    out = tmp_path / "results.csv"
    journal = RowJournal(out)
    journal.append(row(inputs[0], 41.0))
    journal.append(row(inputs[1], 42.0))
    journal._file.write('{"source": "' + inputs[2] + '", "predicted_a')  # the kill tore the last line
    journal._file.flush()
    del journal  # killed: nothing closed or removed
    killed = journal_paths(out)
    assert len(killed) == 1
    with pytest.raises(OutputError, match="pass --resume to finish that run, or --overwrite"):
        RowJournal(out)
    resumed = RowJournal(out, resume=True)
    assert resumed.earlier == killed and resumed.path not in killed
    done = earlier_rows(out, inputs, resumed.earlier)
    assert {i: r["predicted_age"] for i, r in done.items()} == {0: 41.0, 1: 42.0}

    with open(inputs[1], "ab") as f:  # re-exported since: same path, other bytes
        f.write(b"more")
    assert set(earlier_rows(out, inputs, resumed.earlier)) == {0}
    resumed.discard()


def test_not_run_rows_rows_without_hash_and_later_rows(inputs, tmp_path):
    out = tmp_path / "results.csv"
    pd.DataFrame([
        row(inputs[0], 40.0),
        {"source": inputs[1], "error": "not run: the batch was interrupted by SIGTERM before this scan was done"},
        {**row(inputs[2]), HASH_COLUMN: ""},  # e.g. the file was missing then
    ]).to_csv(out, index=False)
    journal = tmp_path / "results.csv.partial-1-a.jsonl"
    journal.write_text(json.dumps(row(inputs[0], 44.0)) + "\n" + json.dumps(row(inputs[2], None, "CorruptFileError: x")) + "\n")
    done = earlier_rows(out, inputs, [journal])
    assert sorted(done) == [0, 2]
    assert float(done[0]["predicted_age"]) == 44.0  # the journal's later row wins
    assert done[2]["error"] == "CorruptFileError: x"  # same bytes, same error: kept
    # rows read back from the results file keep the text written, so they are written back unchanged
    assert earlier_rows(out, inputs, [])[0]["predicted_age"] == "40.0"


def test_rows_for_other_inputs_are_refused_not_dropped(inputs, tmp_path):
    out = tmp_path / "results.csv"
    pd.DataFrame([row(p) for p in inputs]).to_csv(out, index=False)
    with pytest.raises(ValueError, match="1 scan.* not among the inputs now"):
        earlier_rows(out, inputs[:2], [])


def test_a_running_journal_is_left_alone_and_blocks_resume(inputs, tmp_path):
    out = tmp_path / "results.csv"
    running = RowJournal(out)
    running.append(row(inputs[0]))
    with pytest.raises(OutputError, match="another brainage run is writing"):
        RowJournal(out, resume=True)
    other = RowJournal(out, overwrite=True)  # a second run with --overwrite does not take the first one's rows
    assert running.path.exists() and len(journal_paths(out)) == 2
    other.discard()
    out.write_text("source\n")
    running.finish()
    assert journal_paths(out) == []
