"""ecgbench.atomic: whole files or none, reports replaced together, disk errors in one line."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from ecgbench import atomic


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b.txt"
    atomic.write_text(path, "one")
    atomic.write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]


def test_all_or_nothing_renames_at_the_end_or_not_at_all(tmp_path):
    first, second = tmp_path / "report.md", tmp_path / "results.json"
    with atomic.all_or_nothing():
        atomic.write_text(first, "old md")
        atomic.write_text(second, "old json")
        assert not first.exists()  # nothing visible before the block ends
    with pytest.raises(RuntimeError):
        with atomic.all_or_nothing():
            atomic.write_text(first, "new md")
            with atomic.all_or_nothing():  # nested: still one commit, the outer one
                atomic.write_text(second, "new json")
            raise RuntimeError("a later reporter failed")
    assert (first.read_text(), second.read_text()) == ("old md", "old json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
        (errno.ENOTDIR, "a file is in the way"),
    ],
)
def test_disk_errors_become_one_line_naming_the_path_and_fix(tmp_path, code, words):
    error = atomic.write_error(OSError(code, "x"), tmp_path / "out.csv", "pass another --out")
    assert isinstance(error, atomic.WriteError) and error.exit_code == 1
    assert str(error).startswith(f"cannot write {tmp_path / 'out.csv'}: {words}") and str(error).endswith("(pass another --out)")


def test_other_os_errors_are_left_alone(tmp_path):
    original = OSError(errno.EIO, "I/O error")
    assert atomic.write_error(original, tmp_path) is original


def test_ensure_dir_names_the_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(atomic.WriteError, match=f"cannot write into {tmp_path / 'f'}: it is a file, not a folder"):
        atomic.ensure_dir(tmp_path / "f" / "g" / "h")


def test_written_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic.write_bytes(tmp_path / "report.md", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
