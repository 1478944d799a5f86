"""Checksum manifests whose fields have the wrong types (text where a count belongs, a list where an
object belongs, a missing key, nested values of the wrong kind): `Manifest.from_dict` and
`Manifest.load` raise ManifestFileError (exit code 2) naming the field, never a TypeError or KeyError,
and never accept a manifest that would fail later. The command that reads one exits 2."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from etl.checksum.manifest import Manifest, ManifestError, ManifestFileError
from tests.unit.test_restore_verify import CUM_MON, FULL

ROOT = Path(__file__).parents[2]
GOOD = FULL.to_dict()


def edited(path: str, value=None, *, remove: bool = False) -> dict:
    """GOOD with the field at `path` (dotted; list indexes as numbers) replaced or removed."""
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    if remove:
        del node[key]
    else:
        node[key] = value
    return data


@pytest.mark.parametrize("path, value, remove, message", [
    ("tables", {"patients": {}}, False, "tables: expected list, found dict"),
    ("tables.0.buckets", "16", False, "tables[0].buckets: expected int, found str"),
    ("tables.0.buckets", True, False, "tables[0].buckets: expected int, found bool"),
    ("tables.0.buckets", 0, False, "tables[0].buckets: expected a whole number from 1 to 1000000, found 0"),
    ("tables.0.key", "id", False, "tables[0].key: expected list, found str"),
    ("tables.0.key", [1], False, "tables[0].key: expected a non-empty list of column names"),
    ("tables.0.tolerances", [], False, "tables[0].tolerances: expected dict, found list"),
    ("tables.0.tolerances.timestamp_precision", "six", False,
     "tables[0].tolerances.timestamp_precision: Input should be a valid integer, unable to parse string "
     "as an integer"),
    ("tables.0.tolerances.shiny", True, False, "tables[0].tolerances.shiny: Extra inputs are not permitted"),
    ("tables.0.boundaries", [100, 200], False,
     "tables[0].boundaries[0]: expected a non-empty list of key values (text, numbers or booleans), "
     "found int"),
    ("tables.0.boundaries.1", [{"a": 1}], False,
     "tables[0].boundaries[1]: expected a non-empty list of key values (text, numbers or booleans), found "
     "[{'a': 1}]"),
    ("tables.0.segments.0", [], False, "tables[0].segments[0]: expected an object, found list"),
    ("tables.0.segments.1.index", "1", False, "tables[0].segments[1].index: expected int, found str"),
    ("tables.0.segments.1.index", 9, False,
     "tables[0].segments[1].index: 9 is not one of the table's 4 segments, or is given twice"),
    ("tables.0.segments.1.lower", [150], False,
     "tables[0].segments[1]: lower and upper are not the boundaries around segment 1"),
    ("tables.0.segments.1.counts", "0" * 16, False, "tables[0].segments[1].counts: expected list, found str"),
    ("tables.0.segments.1.counts.3", "2", False,
     "tables[0].segments[1].counts[3]: expected a whole number at least 0, found str"),
    ("tables.0.segments.1.counts.3", -1, False,
     "tables[0].segments[1].counts[3]: expected a whole number at least 0, found -1"),
    ("tables.0.segments.1.counts.3", 2.5, False,
     "tables[0].segments[1].counts[3]: expected a whole number at least 0, found float"),
    ("tables.0.segments.1.sums.0", 12, False,
     "tables[0].segments[1].sums[0]: expected 32 hexadecimal digits, found int"),
    ("tables.0.segments.1.sums.0", "xyz", False,
     "tables[0].segments[1].sums[0]: expected 32 hexadecimal digits, found 'xyz'"),
    ("tables.0.segments.1.sums.0", "7", False,
     "tables[0].segments[1].sums[0]: expected 32 hexadecimal digits, found '7'"),
    ("tables.0.segments.1.sums.0", "f" * 33, False,
     "tables[0].segments[1].sums[0]: expected 32 hexadecimal digits, found '" + "f" * 33 + "'"),
    ("tables.0.segments.1.buckets", 8, False,
     "tables[0].segments[1].counts: expected 8 entries (one per bucket), found 16"),
    ("tables.0.segments.1.sums", [], False,
     "tables[0].segments[1].sums: expected 16 entries (one per bucket), found 0"),
    ("tables.0.segments.1.counts", None, True, "tables[0].segments[1].counts: missing"),
    ("tables.0.table", None, True, "tables[0].table: missing"),
    ("position", "0/100", False, "position: expected dict, found str"),
    ("kind", "weekly", False, "kind: expected 'full' or 'differential', found 'weekly'"),
    ("base", 7, False, "base: expected str or null, found int"),
    ("taken_at", None, True, "taken_at: missing"),
    ("encoding", None, True, "encoding: missing"),
])
def test_a_field_of_the_wrong_type_is_named(path, value, remove, message):
    with pytest.raises(ManifestFileError) as caught:
        Manifest.from_dict(edited(path, value, remove=remove))
    assert caught.value.message == message
    assert caught.value.exit_code == 2


def test_a_manifest_that_is_not_an_object_and_a_table_given_twice():
    with pytest.raises(ManifestFileError, match=r"^the manifest: expected an object, found list$"):
        Manifest.from_dict([GOOD])
    twice = copy.deepcopy(GOOD)
    twice["tables"].append(twice["tables"][0])
    with pytest.raises(ManifestFileError, match=r"^tables\[1\]\.table: 'patients' is given twice$"):
        Manifest.from_dict(twice)


def test_good_manifests_still_round_trip():
    for manifest in (FULL, CUM_MON):
        assert Manifest.from_dict(manifest.to_dict()).to_dict() == manifest.to_dict()


ODD = [None, True, 0, -1, 1.5, "7", "", "x" * 5, [], [1], ["a"], [[1]], {}, {"a": 1}, {"index": 0},
       "0" * 33, 2**70, float("nan")]


def nodes(value, path=()):
    """Every (path, node) in the manifest's JSON tree."""
    yield path, value
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from nodes(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from nodes(inner, (*path, index))


@pytest.mark.parametrize("seed", range(8))
def test_random_wrong_types_are_refused_or_read_back_exactly(seed):
    """Each of 400 edits per seed replaces or removes one field anywhere in the tree (1 to 3 at once).
    `from_dict` either raises ManifestFileError or accepts a manifest that `to_dict` gives back
    unchanged (the edit was still well-formed, e.g. a boundary 100 -> 7 inside the order)."""
    rng = random.Random(seed)
    places = [path for path, _ in nodes(GOOD) if path]
    refused = 0
    for _ in range(400):
        data = copy.deepcopy(GOOD)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(places)
            node = data
            try:
                for part in path[:-1]:
                    node = node[part]
                if rng.random() < 0.2:
                    del node[path[-1]]
                else:
                    node[path[-1]] = copy.deepcopy(rng.choice(ODD))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier edit of this round removed or replaced a parent
        try:
            manifest = Manifest.from_dict(data)
        except ManifestFileError as error:
            assert error.message and "Error" not in error.message.split(":")[0], error.message
            refused += 1
            continue
        except Exception as error:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"seed {seed}: raw {type(error).__name__}: {error} for {data}") from error
        assert json.loads(json.dumps(manifest.to_dict())) == json.loads(json.dumps(data))
    assert refused > 300


JOB = """\
version: 1
name: manifests
sources:
  src: {type: postgres, dsn: "host=localhost dbname=unused", tables: {}}
targets:
  out: {type: postgres, dsn: "host=localhost dbname=unused"}
restore:
  engine: postgresql
  manifests: manifests
  source: {dsn: "host=localhost dbname=unused"}
  tables:
    patients: {key: [id]}
"""


@pytest.mark.parametrize("path, value, message", [
    ("tables.0.buckets", "16", "tables[0].buckets: expected int, found str"),
    ("tables.0.segments.0.counts.0", "1",
     "tables[0].segments[0].counts[0]: expected a whole number at least 0, found str"),
    ("tables", [{"table": "patients"}], "tables[0].target: missing"),
])
def test_the_command_exits_2_naming_the_manifest_and_the_field(tmp_path, path, value, message):
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "full-sun.json").write_text(json.dumps(edited(path, value)))
    (tmp_path / "job.yaml").write_text(JOB)
    done = subprocess.run([sys.executable, "-m", "etl.run", str(tmp_path / "job.yaml"), "--take-manifest",
                           "diff-mon", "--base", "full-sun", "--position", "0/3000060"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stdout + done.stderr
    manifest = tmp_path / "manifests" / "full-sun.json"
    assert done.stderr == f"error: {manifest}: {message}\n"
    assert not (tmp_path / "manifests" / "diff-mon.json").exists()


def test_manifest_file_error_is_a_manifest_error():
    assert issubclass(ManifestFileError, ManifestError)
