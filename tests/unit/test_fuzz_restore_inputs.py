"""Damaged restore inputs (backup histories, backup_manifest, backup_label, oplogs, checksum
manifests): every reader returns a result or raises an EtlError naming the file, never a Python
exception. Random damage is derandomized and bounded; the minimal inputs found are pinned below."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime
from pathlib import Path

import bson
import pytest
from bson.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.checksum.manifest import Manifest, ManifestError, ManifestFileError
from etl.errors import EtlError
from etl.restore import mongo, oracle, postgres, sqlserver
from etl.restore.chain import ChainError, UnreadableInput
from tests.unit.test_restore_postgres import write_backup
from tests.unit.test_restore_verify import FULL

FIXTURES = Path(__file__).parents[1] / "fixtures" / "restore"
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(10**40), 10**40), st.floats(),
                        st.text(max_size=8), st.just([]), st.just({}), st.just([[[[]]]]))


def damage(raw: bytes):
    """Truncations, byte flips, insertions and whole replacements of `raw`."""
    cut = st.integers(0, len(raw)).map(lambda n: raw[:n])
    flip = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
        lambda f: raw[:f[0]] + bytes([f[1]]) + raw[f[0] + 1:])
    insert = st.tuples(st.integers(0, len(raw)), st.binary(min_size=1, max_size=8)).map(
        lambda f: raw[:f[0]] + f[1] + raw[f[0]:])
    whole = st.sampled_from([b"", b"\xff\xfe\x00", b"[" * 100_000, b"null", b"1e999", b"NaN", b"[1,2]",
                             b'"x"', b"{}", b"[null]", b'[{"a": 1}]'])
    return st.one_of(cut, flip, insert, whole)


def edit_json(data):
    """One field of `data` (a list of objects or an object) replaced by a wrong value or removed."""
    def apply(choice):
        (index, key, value, remove) = choice
        copy = json.loads(json.dumps(data))
        target = copy[index % len(copy)] if isinstance(copy, list) else copy
        keys = sorted(target)
        name = keys[key % len(keys)]
        if remove:
            del target[name]
        else:
            target[name] = value
        return json.dumps(copy).encode()
    return st.tuples(st.integers(0, 50), st.integers(0, 50), JSON_VALUES, st.booleans()).map(apply)


def names_file(call, path):
    """Run `call`; an EtlError must name `path` (a chain rule names the backups instead)."""
    try:
        call()
    except EtlError as error:
        if type(error) in (ChainError, EtlError, ManifestError, ManifestFileError, postgres.BackupDamaged,
                           UnreadableInput, postgres.MalformedManifest):
            assert str(path) in str(error), str(error)
        return error
    return None


# -- SQL Server ---------------------------------------------------------------------------------

SQL_JSON = (FIXTURES / "sqlserver" / "chain.json").read_bytes()
SQL_CSV = (FIXTURES / "sqlserver" / "headeronly.csv").read_bytes()


@SETTINGS
@given(data=st.one_of(damage(SQL_JSON), edit_json(json.loads(SQL_JSON))), csv=st.booleans())
def test_sqlserver_history_damage(tmp_path_factory, data, csv):
    path = tmp_path_factory.mktemp("h") / ("backupset.csv" if csv else "backupset.json")
    path.write_bytes(data if not csv else data.replace(b"{", b","))
    names_file(lambda: sqlserver.load_history(path).plan(), path)


@SETTINGS
@given(data=damage(SQL_CSV))
def test_sqlserver_headeronly_csv_damage(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("h") / "headeronly.csv"
    path.write_bytes(data)
    names_file(lambda: sqlserver.load_history(path).plan(), path)


DBATOOLS = (FIXTURES / "sqlserver" / "dbatools.json").read_bytes()
MSDB_TEXT = (FIXTURES / "sqlserver" / "msdb_text.csv").read_bytes()
FORKS = json.loads((FIXTURES / "sqlserver" / "forks.json").read_text())


@SETTINGS
@given(data=st.one_of(damage(DBATOOLS), damage(MSDB_TEXT), edit_json(FORKS),
                      edit_json(json.loads(DBATOOLS.decode("utf-16")))),
       target=st.sampled_from([None, 37000000025000001, datetime(2026, 11, 3, 12)]))
def test_sqlserver_exports_damage(tmp_path_factory, data, target):
    """dbatools UTF-16 JSON, msdb CSV with text types and US dates, histories with forks."""
    path = tmp_path_factory.mktemp("h") / ("history.csv" if data[:4] == MSDB_TEXT[:4] else "history.json")
    path.write_bytes(data)
    names_file(lambda: sqlserver.load_history(path).plan(target), path)


@pytest.mark.parametrize(("data", "message"), [
    (b"[1,2]", "backupset.json: row 1 is int, not an object of backupset columns"),
    (b"1e999", "backupset.json: expected a JSON list of backupset rows, found float"),
    (b"[" * 100_000, "backupset.json: JSON nested too deeply"),
    (b'[{"name": "\xe6"}]', "backupset.json: byte offset 11: not UTF-8 text"),
], ids=["numbers", "huge number", "deep nesting", "not UTF-8"])
def test_sqlserver_pinned(tmp_path, data, message):
    path = tmp_path / "backupset.json"
    path.write_bytes(data)
    with pytest.raises(EtlError) as caught:
        sqlserver.load_history(path)
    assert str(caught.value).startswith(str(tmp_path / message)) or message in str(caught.value)
    assert str(path) in str(caught.value)


def test_sqlserver_history_that_is_a_folder(tmp_path):
    (tmp_path / "backupset.json").mkdir()
    with pytest.raises(EtlError, match="cannot read SQL Server backup history .*json: Is a directory"):
        sqlserver.load_history(tmp_path / "backupset.json")


# -- Oracle -------------------------------------------------------------------------------------

ORACLE = FIXTURES / "oracle" / "cumulative"
VIEWS = sorted(p.name for p in ORACLE.iterdir())


@SETTINGS
@given(view=st.sampled_from(VIEWS), how=st.data())
def test_oracle_views_damage(tmp_path_factory, view, how):
    folder = tmp_path_factory.mktemp("o") / "views"
    shutil.copytree(ORACLE, folder)
    raw = (ORACLE / view).read_bytes()
    mutate = st.one_of(damage(raw), edit_json(json.loads(raw))) if view.endswith(".json") else damage(raw)
    (folder / view).write_bytes(how.draw(mutate))
    names_file(lambda: oracle.load_views(folder).plan(), folder)


@pytest.mark.parametrize(("data", "message"), [
    (b'"x"', "v$backup_set.json: expected a JSON list of V$BACKUP_SET rows, found str"),
    (b"[null]", "v$backup_set.json: row 1 is NoneType, not an object of V$BACKUP_SET columns"),
    (b'[{"SET_STAMP": [], "SET_COUNT": 1}]', "views: SET_STAMP [] is not a whole number"),
    (b'[{"SET_STAMP": 1e400, "SET_COUNT": 1}]', "views: SET_STAMP inf is not a whole number"),
])
def test_oracle_pinned(tmp_path, data, message):
    folder = tmp_path / "views"
    shutil.copytree(ORACLE, folder)
    (folder / "v$backup_set.json").write_bytes(data)
    with pytest.raises(EtlError) as caught:
        oracle.load_views(folder)
    assert message in str(caught.value)


def test_oracle_view_that_is_a_folder(tmp_path):
    folder = tmp_path / "views"
    shutil.copytree(ORACLE, folder)
    (folder / "v$backup_redolog.json").unlink()
    (folder / "v$backup_redolog.json").mkdir()
    with pytest.raises(EtlError, match=r"cannot read V\$BACKUP_REDOLOG export .*: Is a directory"):
        oracle.load_views(folder)


# -- PostgreSQL ---------------------------------------------------------------------------------

def backup(tmp_path: Path) -> Path:
    return write_backup(tmp_path / "b1", start="0/2000028", end="0/2000100")


def with_checksum(data: dict) -> bytes:
    body = json.dumps({k: v for k, v in data.items() if k != "Manifest-Checksum"})[:-1] + ",\n"
    import hashlib
    return (body + f'"Manifest-Checksum": "{hashlib.sha256(body.encode()).hexdigest()}"}}\n').encode()


@SETTINGS
@given(name=st.sampled_from(["backup_manifest", "backup_label", "global/pg_control"]), verify=st.booleans(),
       how=st.data())
def test_postgres_backup_damage(tmp_path_factory, name, verify, how):
    folder = backup(tmp_path_factory.mktemp("p"))
    raw = (folder / name).read_bytes()
    (folder / name).write_bytes(how.draw(damage(raw)))
    names_file(lambda: postgres.chain_from_folders([folder], verify=verify).plan(), folder)


@SETTINGS
@given(choice=st.tuples(st.sampled_from(["top", "Files", "WAL-Ranges"]), st.integers(0, 9), JSON_VALUES,
                        st.booleans()), verify=st.booleans())
def test_postgres_manifest_fields(tmp_path_factory, choice, verify):
    folder = backup(tmp_path_factory.mktemp("p"))
    data = json.loads((folder / "backup_manifest").read_text())
    where, key, value, remove = choice
    target = data if where == "top" else data[where][0]
    name = sorted(target)[key % len(target)]
    if remove:
        del target[name]
    else:
        target[name] = value
    (folder / "backup_manifest").write_bytes(with_checksum(data))
    names_file(lambda: postgres.chain_from_folders([folder], verify=verify).plan(), folder)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("PostgreSQL-Backup-Manifest-Version", None,
     "PostgreSQL-Backup-Manifest-Version: manifest version not an integer: null"),
    ("PostgreSQL-Backup-Manifest-Version", float("inf"),
     "PostgreSQL-Backup-Manifest-Version: manifest version not an integer: Infinity"),
    ("System-Identifier", [], "System-Identifier: manifest system identifier not an integer: array"),
    ("Files", "x", "Files: unexpected scalar: Files must be an array"),
    ("Files", None, "Files: unexpected scalar: Files must be an array"),
    ("WAL-Ranges", [{"Timeline": 1, "Start-LSN": None, "End-LSN": "0/1"}],
     "WAL-Ranges entry 1: could not parse start LSN: null"),
    ("WAL-Ranges", [{}], "WAL-Ranges entry 1: missing timeline"),
])
def test_postgres_manifest_pinned(tmp_path, field, value, message):
    folder = backup(tmp_path)
    data = json.loads((folder / "backup_manifest").read_text())
    data[field] = value
    (folder / "backup_manifest").write_bytes(with_checksum(data))
    with pytest.raises(postgres.BackupDamaged) as caught:
        postgres.read_manifest(folder / "backup_manifest")
    assert str(caught.value).startswith(f"{folder / 'backup_manifest'}")
    assert message in str(caught.value)


@pytest.mark.parametrize(("entry", "message"), [
    ({}, "Files entry 1: missing path name"),
    ({"Path": "base/1", "Size": "x"}, 'Files entry 1 (base/1): file size is not an integer: "x"'),
    ({"Path": "base/1"}, "Files entry 1 (base/1): missing size"),
    ({"Path": [], "Size": 1}, "Files entry 1: Path: unexpected array"),
    ({"Path": "base/1", "Size": 1, "Checksum-Algorithm": []},
     "Files entry 1: Checksum-Algorithm: unexpected array"),
])
def test_postgres_manifest_file_entry_pinned(tmp_path, entry, message):
    folder = backup(tmp_path)
    data = json.loads((folder / "backup_manifest").read_text())
    data["Files"][0] = entry
    (folder / "backup_manifest").write_bytes(with_checksum(data))
    with pytest.raises(postgres.BackupDamaged, match=None) as caught:
        postgres.read_manifest(folder / "backup_manifest")
    assert str(caught.value).startswith(f"{folder / 'backup_manifest'}: {message}")


@pytest.mark.parametrize(("label", "message"), [
    (None, "cannot read backup_label {path}: No such file or directory"),
    ("dir", "cannot read backup_label {path}: Is a directory"),
    (b"START WAL LOCATION: 0/2000028\n\xac", "{path}: byte offset 30: not UTF-8 text"),
    (b"START WAL LOCATION: 0/2000028\nSTART TIMELINE: \n", "{path}: START TIMELINE '' is not a whole number"),
    (b"START WAL LOCATION: 0/ZZ\n", "{path}: '0/ZZ' is not a PostgreSQL LSN"),
])
def test_postgres_backup_label_pinned(tmp_path, label, message):
    folder = backup(tmp_path)
    path = folder / "backup_label"
    path.unlink()
    if label == "dir":
        path.mkdir()
    elif label is not None:
        path.write_bytes(label)
    with pytest.raises(ChainError) as caught:
        postgres.read_backup_label(path)
    assert str(caught.value).startswith(message.format(path=path))


def test_postgres_version1_without_pg_control(tmp_path):
    folder = write_backup(tmp_path / "b1", start="0/2000028", end="0/2000100", version=1,
                          files={"base/5/16384": b"heap page"})
    with pytest.raises(ChainError, match=r"cannot read .*global/pg_control for the system identifier"):
        postgres.chain_from_folders([folder])


# -- MongoDB oplog chains -----------------------------------------------------------------------

OPLOG = b"".join(bson.encode({"ts": Timestamp(1_764_000_000 + s, 1), "op": "n", "o": {}}) for s in range(4))


@SETTINGS
@given(data=damage(OPLOG), gz=st.booleans(), gz_damage=st.booleans())
def test_mongo_oplog_damage(tmp_path_factory, data, gz, gz_damage):
    folder = tmp_path_factory.mktemp("m") / "dump"
    (folder / "clinic").mkdir(parents=True)
    (folder / "clinic" / "patients.bson").write_bytes(bson.encode({"_id": 1}))
    name = "oplog.bson.gz" if gz else "oplog.bson"
    payload = gzip.compress(data) if gz else data
    if gz and gz_damage:
        payload = payload[: len(payload) // 2]
    (folder / name).write_bytes(payload)
    names_file(lambda: mongo.chain_from_dumps([folder]).plan(), folder)


@pytest.mark.parametrize(("payload", "message"), [
    (gzip.compress(OPLOG)[:30], "oplog.bson.gz: damaged gzip data"),
    (b"not gzip at all", "oplog.bson.gz: damaged gzip data"),
])
def test_mongo_oplog_gzip_pinned(tmp_path, payload, message):
    (tmp_path / "oplog.bson.gz").write_bytes(payload)
    with pytest.raises(ChainError) as caught:
        mongo.read_oplog_range(tmp_path / "oplog.bson.gz")
    assert str(caught.value).startswith(f"{tmp_path / message}")


def test_mongo_oplog_folder_in_place_of_the_file(tmp_path):
    (tmp_path / "oplog.bson").mkdir()
    with pytest.raises(ChainError, match="no oplog.bson or local/oplog.rs.bson"):
        mongo.chain_from_dumps([tmp_path])


def test_mongo_symlink_loop_in_a_dump(tmp_path):
    (tmp_path / "clinic").mkdir()
    (tmp_path / "clinic" / "patients.bson").write_bytes(bson.encode({"_id": 1}))
    (tmp_path / "clinic" / "loop").symlink_to(tmp_path / "clinic")
    (tmp_path / "oplog.bson").write_bytes(OPLOG)
    assert mongo.chain_from_dumps([tmp_path]).backups[0].kind.value == "full"


# -- checksum manifests -------------------------------------------------------------------------

@SETTINGS
@given(how=st.data(), parquet=st.booleans())
def test_checksum_manifest_damage(tmp_path_factory, how, parquet):
    path = tmp_path_factory.mktemp("c") / ("full.parquet" if parquet else "full.json")
    FULL.save(path)
    raw = path.read_bytes()
    mutate = damage(raw) if parquet else st.one_of(damage(raw), edit_json(json.loads(raw)))
    path.write_bytes(how.draw(mutate))
    names_file(lambda: Manifest.load(path), path)


@pytest.mark.parametrize(("data", "message"), [
    (b"null", "full.json: not a readable manifest (a JSON NoneType, not an object)"),
    (b"[" * 100_000, "full.json: not a readable manifest (JSON nested too deeply)"),
    (b'{"a": "\xff"}', "full.json: not a readable manifest (byte offset 7: not UTF-8 text)"),
], ids=["null", "deep nesting", "not UTF-8"])
def test_checksum_manifest_pinned(tmp_path, data, message):
    (tmp_path / "full.json").write_bytes(data)
    with pytest.raises(ManifestError) as caught:
        Manifest.load(tmp_path / "full.json")
    assert str(caught.value).startswith(str(tmp_path / message))
