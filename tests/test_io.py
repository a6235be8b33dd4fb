"""Files that cannot tear (:mod:`pixelprior._io`): atomic writes clean up after any error,
a full disk names the file and how to resume, rows are whole JSON objects with their line
numbers, one run per folder, and the early signal handlers."""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest

from pixelprior import _io
from pixelprior._io import (
    RESUME_HINT,
    CorruptResultsError,
    DiskFullError,
    RunLock,
    RunLockedError,
    append_rows,
    atomic_write,
    check_unique,
    foreign_entries,
    read_numbered_rows,
    read_rows,
    save_npz_atomic,
    write_json_atomic,
)
from pixelprior._io import rows as io_rows


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ atomic writes
def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path, "w") as f:
            f.write('{"v": 2')  # half a file, then an error
            raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"v": 1}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EDQUOT, "disk quota exceeded")])
def test_a_full_disk_names_the_file_and_how_to_resume(tmp_path, code, words):
    path = tmp_path / "maps" / "seed0-2.npz"
    path.parent.mkdir()
    with pytest.raises(DiskFullError) as caught:
        with atomic_write(path) as f:
            f.write(b"part of an archive")
            raise OSError(code, os.strerror(code))  # what a write on a full disk raises
    message = str(caught.value)
    assert message == f"{words} writing {path}; {RESUME_HINT}"
    assert "free space and run the same command to resume" in message
    assert isinstance(caught.value, OSError) and caught.value.errno == code
    assert leftovers(path.parent) == [] and not path.exists()


def test_a_full_disk_inside_numpy_leaves_no_temporary_file(tmp_path, monkeypatch):
    import numpy as np

    def full(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    with pytest.raises(DiskFullError, match="seed0-2.npz; rows written so far are kept"):
        save_npz_atomic(tmp_path / "seed0-2.npz", a=np.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_write(tmp_path / "x", "w"):
            raise PermissionError(errno.EACCES, "denied")
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ rows
def test_append_rows_on_a_full_disk_keeps_earlier_rows_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_rows(path, [{"a": 1}])
    real = os.write
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the second row: the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(io_rows.os, "write", write)
    with pytest.raises(DiskFullError) as caught:
        append_rows(path, [{"a": 2}, {"a": 3}])
    monkeypatch.setattr(io_rows.os, "write", real)
    assert str(path) in str(caught.value) and RESUME_HINT in str(caught.value)
    assert read_rows(path) == [{"a": 1}, {"a": 2}]  # rows written before are kept


def test_a_short_write_is_taken_back_not_left_torn(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    append_rows(path, [{"a": 1}])
    real = os.write
    monkeypatch.setattr(io_rows.os, "write", lambda fd, data: real(fd, data[:5]))
    with pytest.raises(DiskFullError, match="no space left on device writing"):
        append_rows(path, [{"a": 2}])
    monkeypatch.setattr(io_rows.os, "write", real)
    assert path.read_text() == '{"a": 1}\n'


def test_rows_come_with_their_line_numbers(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_numbered_rows(path) == [(1, {"a": 1}), (3, {"a": 2})]
    assert read_rows(path) == [{"a": 1}, {"a": 2}]
    assert read_rows(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize("line, kind", [("[1, 2]", "list"), ('"row"', "string"),
                                        ("7", "number"), ("null", "null")])
def test_a_line_that_is_not_an_object_is_refused_by_line(tmp_path, line, kind):
    path = tmp_path / "r.jsonl"
    path.write_text(f'{{"a": 1}}\n{line}\n{{"a": 2}}\n')
    with pytest.raises(CorruptResultsError, match=f"line 2: a JSON {kind}, not a row"):
        read_rows(path)


def test_duplicates_name_their_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"k": 1}\n\n{"k": 2}\n{"k": 1}\n')
    with pytest.raises(CorruptResultsError, match="k=1 on lines 1 and 4"):
        read_rows(path, key=("k",))
    with pytest.raises(CorruptResultsError, match="on rows 1 and 2"):
        check_unique([{"k": [1]}, {"k": [1]}], ("k",))  # unhashable values are keys too


# ------------------------------------------------------------------ folders and locks
def test_one_lock_per_folder_and_it_is_released(tmp_path):
    with RunLock(tmp_path / "run", command="first"):
        with pytest.raises(RunLockedError, match=r"in use by another run \(pid \d+ .*first"):
            with RunLock(tmp_path / "run", command="second"):
                pass
    with RunLock(tmp_path / "run"):
        pass


def test_foreign_entries(tmp_path):
    (tmp_path / "mine.json").write_text("{}")
    (tmp_path / "theirs.txt").write_text("")
    assert foreign_entries(tmp_path, lambda name, is_dir: name == "mine.json") == [
        "theirs.txt"]
    assert foreign_entries(tmp_path / "absent", lambda *a: False) == []


def test_early_signal_handlers_raise_while_a_command_runs_and_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    _io.install_early_signals()
    try:
        assert signal.getsignal(signal.SIGTERM) is _io._early_handler
        _io.early_signals_raise(True)
        with pytest.raises(_io.Interrupted) as caught:
            _io._early_handler(signal.SIGTERM, None)
        assert caught.value.exit_code == 143
    finally:
        _io.restore_early_signals()
    assert signal.getsignal(signal.SIGTERM) is before
    assert _io.EARLY_MESSAGE.format(name="SIGINT") == (
        "interrupted before the run started (SIGINT); nothing was written")


def test_the_writable_check_leaves_no_probe_behind(tmp_path):
    from pixelprior._io import check_writable_dir

    (tmp_path / "mine.txt").write_text("x")
    check_writable_dir(tmp_path / "new" / "out")
    check_writable_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
