"""Atomic writes: readable like a plain open() would leave them, existing permissions kept."""

from __future__ import annotations

import os
import stat

from cdnet.fileio import atomic_write_bytes, atomic_write_json


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic = tmp_path / "sub" / "atomic.bin"
    atomic_write_bytes(atomic, b"data")
    assert atomic.read_bytes() == b"data"
    assert _mode(atomic) == _mode(plain)  # not mkstemp's private 0600
    assert [p.name for p in atomic.parent.iterdir()] == ["atomic.bin"]  # no temp file left


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    os.chmod(secret, 0o600)
    atomic_write_json(secret, {"a": 1})
    assert _mode(secret) == 0o600 and '"a": 1' in secret.read_text()
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    os.chmod(shared, 0o664)
    atomic_write_json(shared, {"b": 2})
    assert _mode(shared) == 0o664
