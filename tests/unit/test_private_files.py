"""etl.files: what etl writes is 0600 and the folders it creates 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from etl.checksum import Manifest
from etl.files import make_folder, make_private, open_private, write_private
from etl.sinks.deadletter import DeadLetterStore


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.fixture(params=[0o000, 0o022, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_folders_are_created_0700_and_existing_ones_left_alone(tmp_path, umask):
    os.chmod(tmp_path, 0o755)
    assert make_folder(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    assert [mode(tmp_path / p) for p in ("", "a", "a/b", "a/b/c")] == ["0o755", "0o700", "0o700", "0o700"]
    make_folder(tmp_path / "a")
    assert mode(tmp_path / "a") == "0o700"


def test_files_are_0600_also_when_they_were_wider_before(tmp_path, umask):
    write_private(tmp_path / "new" / "text.json", "{}\n")
    write_private(tmp_path / "bytes.bin", b"\x00\x01")
    old = tmp_path / "old.jsonl"
    old.write_text("earlier\n")
    os.chmod(old, 0o666)
    with open_private(old, "a", encoding="utf-8") as handle:
        handle.write("later\n")
    make_private(tmp_path / "empty")
    assert {p.name: mode(p) for p in tmp_path.rglob("*")} == {
        "new": "0o700", "text.json": "0o600", "bytes.bin": "0o600", "old.jsonl": "0o600", "empty": "0o600"}
    assert old.read_text() == "earlier\nlater\n"
    assert (tmp_path / "new" / "text.json").read_text() == "{}\n"
    assert (tmp_path / "bytes.bin").read_bytes() == b"\x00\x01"


def test_open_private_only_writes(tmp_path):
    with pytest.raises(ValueError, match="open_private writes only: mode 'r'"):
        open_private(tmp_path / "x", "r")


@pytest.mark.parametrize("name", ["full.json", "full.parquet"])
def test_manifests_are_0600(tmp_path, umask, name):
    manifest = Manifest(position={"lsn": "0/1"}, taken_at="sun")
    manifest.save(tmp_path / "manifests" / name)
    assert (mode(tmp_path / "manifests"), mode(tmp_path / "manifests" / name)) == ("0o700", "0o600")
    assert Manifest.load(tmp_path / "manifests" / name).position == {"lsn": "0/1"}


def test_dead_letter_files_are_0600(tmp_path, umask):
    store = DeadLetterStore(tmp_path / ".etl" / "dead_letter.jsonl", job="j")
    store.close()
    assert (mode(tmp_path / ".etl"), mode(tmp_path / ".etl" / "dead_letter.jsonl")) == ("0o700", "0o600")
