"""Atomic writes (pipeline.atomic): old or new content, never a partial file, no leftovers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_bytes_text_and_json_round_trip(tmp_path):
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "a.txt", "café")
    assert (tmp_path / "a.txt").read_bytes() == "café".encode()
    atomic_write_json(tmp_path / "a.json", {"x": [1, 2.5], "t": tmp_path})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2.5], "t": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.json", "a.txt"]


def test_replaces_existing_file(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "old")
    atomic_write_text(tmp_path / "f.txt", "new")
    assert (tmp_path / "f.txt").read_text() == "new"


def test_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"v": 1})
    with pytest.raises(ValueError, match="JSON compliant"):
        atomic_write_json(tmp_path / "s.json", {"v": float("nan")})
    assert json.loads((tmp_path / "s.json").read_text()) == {"v": 1}


def test_writer_sees_a_hidden_temporary_with_the_target_suffix(tmp_path):
    seen = []

    def save(tmp):
        seen.append(tmp)
        np.save(tmp, np.arange(3))  # np.save would append .npy unless the suffix is kept

    atomic_write(tmp_path / "x.npy", save)
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".x.npy.tmp-")
    assert seen[0].suffix == ".npy"
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), [0, 1, 2])


def test_missing_directory_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write_bytes(tmp_path / "no" / "f.bin", b"")
