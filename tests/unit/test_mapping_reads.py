"""The paths a mapping reads (`CompiledMapping.reads`), checked against a catalogue, a sample and the
records a partition extracts; the worker keeps what it found across a resume."""

from __future__ import annotations

import textwrap

import pytest

from etl.engine.accounting import Counts
from etl.engine.control import RunControl
from etl.engine.mapcheck import against_catalogue, against_sample
from etl.engine.plan import Plan, TablePlan
from etl.engine.seen import present_of, unseen_paths
from etl.engine.worker import PartitionWork, PartitionWorker
from etl.errors import MappingError
from etl.mapping import compile_mapping, parse_mapping
from etl.mapping.reads import present
from etl.sources.base import Catalogue
from etl.sources.mssql import MssqlSource
from etl.sources.oracle import OracleSource
from etl.sources.postgres import PostgresSource
from etl.state.sqlite import Config as SqliteConfig
from etl.state.sqlite import open_store
from tests.unit.engine_fakes import DictSink, ListSource, MemoryDeadLetters

TEXT = textwrap.dedent("""\
    source: {key: [id]}
    targets: {pg: postgres}
    where: "status != 'x'"
    pii:
      email: redact
    outputs:
      - target: pg
        table: t
        key: [id]
        columns:
          id: {from: id, type: int}
          city: adress.city
          note: {from: note, optional: true}
          label: {template: "{first}-{last}"}
          m: {map: {a: aa, b: {from: bb, optional: true}}}
      - target: pg
        table: items
        explode: items[]
        parent: t
        where: "qty > 0"
        columns:
          sku: skus
          rid: $root.id
    """)


def test_every_read_with_its_place_table_top_field_and_optional_flag():
    reads = compile_mapping(parse_mapping(TEXT, "m.yaml")).reads
    assert [(r.id, r.where, r.table, r.top, r.optional) for r in reads] == [
        ("source.key[0]=id", "m.yaml:1:16", "(record)", "id", False),
        ("where=status", "m.yaml:3:9", "(record)", "status", False),
        ("pii.email=email", "m.yaml:5:3", "(record)", "email", False),
        ("outputs[0].columns.id.from=id", "m.yaml:11:18", "t", "id", False),
        ("outputs[0].columns.city=adress.city", "m.yaml:12:13", "t", "adress", False),
        ("outputs[0].columns.note.from=note", "m.yaml:13:20", "t", "note", True),
        ("outputs[0].columns.label.template=first", "m.yaml:14:26", "t", "first", False),
        ("outputs[0].columns.label.template=last", "m.yaml:14:26", "t", "last", False),
        ("outputs[0].columns.m.map.a=aa", "m.yaml:15:20", "t", "aa", False),
        ("outputs[0].columns.m.map.b.from=bb", "m.yaml:15:34", "t", "bb", True),
        ("outputs[1].explode=items[]", "m.yaml:18:14", "items", "items", False),
        ("outputs[1].where=qty", "m.yaml:20:13", "items", None, False),
        ("outputs[1].columns.sku=skus", "m.yaml:22:12", "items", None, False),
        ("outputs[1].columns.rid=$root.id", "m.yaml:23:12", "items", "id", False),
    ]


def test_present_looks_through_nested_documents_and_array_elements():
    reads = compile_mapping(parse_mapping(TEXT, "m.yaml")).reads
    records = [{"id": 1, "address": {"city": "Oslo"}, "items": [{"qty": 0}]},
               {"id": 2, "adress": {"town": "Rome"}, "items": "not an array", "first": None},
               {"id": 3, "items": [{"sku": "a"}, {"skus": "b"}]}]
    assert sorted(present(reads, records)) == [
        "outputs[0].columns.id.from=id", "outputs[0].columns.label.template=first",
        "outputs[1].columns.rid=$root.id", "outputs[1].columns.sku=skus", "outputs[1].explode=items[]",
        "outputs[1].where=qty", "source.key[0]=id"]
    assert present(reads, []) == set()


def test_optional_is_true_or_false_and_never_with_required():
    both = TEXT.replace("{from: note, optional: true}", "{from: note, optional: true, required: true}")
    with pytest.raises(MappingError) as caught:
        parse_mapping(both, "m.yaml")
    assert caught.value.message == (
        "m.yaml:13:36: outputs[0].columns.note.optional: a column cannot be both required and optional")
    with pytest.raises(MappingError) as caught:
        parse_mapping(TEXT.replace("optional: true}", "optional: yes please}", 1), "m.yaml")
    assert caught.value.message == "m.yaml:13:36: outputs[0].columns.note.optional: optional is true or false"


CATALOGUE_MAPPING = textwrap.dedent("""\
    targets: {pg: postgres}
    outputs:
      - target: pg
        table: t
        key: [id]
        columns:
          id: {from: id, type: int}
          who: {from: COMPOSER}
          doc: {from: data.city.name}
          rest: {rest: true, exclude: [secret]}
    """)


@pytest.mark.parametrize(("engine", "near"), [
    (PostgresSource, "composer"),   # an unquoted COMPOSER is composer, not the quoted "Composer"
    (OracleSource, "COMPOSER"),
    (MssqlSource, "Composer"),      # any case: the first column the catalogue lists
])
def test_a_catalogue_refuses_names_it_lacks_and_suggests_the_column_the_engine_would_take(engine, near):
    names = ("id", "Composer", "composer", "COMPOSER", "secret", "extra")
    mapping = compile_mapping(parse_mapping(CATALOGUE_MAPPING.replace("COMPOSER", "cOMPOSEr"), "m.yaml"))
    catalogue = Catalogue(names, "the table", lambda written, name: engine.names_column(None, written, name))
    with pytest.raises(MappingError) as caught:
        against_catalogue(mapping, catalogue, "s.t")
    assert caught.value.message == (
        "m.yaml has 2 problems:\n"
        "m.yaml:8:19: outputs[0].columns.who.from: column 'cOMPOSEr' is not in the table; "
        f"did you mean '{near}'?\n"
        "m.yaml:9:19: outputs[0].columns.doc.from: `data.city.name` reads column 'data', which is not in the "
        "table")


def test_unused_columns_are_those_no_output_reads_and_rest_reads_all_it_does_not_exclude():
    mapping = compile_mapping(parse_mapping(CATALOGUE_MAPPING.replace("COMPOSER", "who"), "m.yaml"))
    catalogue = Catalogue(("id", "who", "data", "secret", "extra"), "the table", str.__eq__)
    assert against_catalogue(mapping, catalogue, "s.t").unused == ("secret",)
    without_rest = compile_mapping(parse_mapping(CATALOGUE_MAPPING.replace("COMPOSER", "who").replace(
        "      rest: {rest: true, exclude: [secret]}\n", ""), "m.yaml"))
    assert against_catalogue(without_rest, catalogue, "s.t").unused == ("extra", "secret")
    fit = against_sample(without_rest, [{"id": 1, "who": 2, "spare": 3}, {"id": 2, "more": 1}], "s.t")
    assert (fit.checked, fit.unused) == ("sample of 2 records", ("more", "spare"))
    assert fit.warnings == ("m.yaml:9:19: t.doc: path `data.city.name` is absent from all 2 sampled records",)


WORKER_MAPPING = textwrap.dedent("""\
    targets: {mem: postgres}
    outputs:
      - target: mem
        table: people
        key: [id]
        columns:
          id: {from: _id, type: int}
          nick: nick
          other: {from: other, optional: true}
    """)
NICK = "outputs[0].columns.nick=nick"


def test_what_a_partition_found_survives_a_resume_and_decides_the_table(tmp_path):
    """Only the first batch has `nick`; the source breaks after it, and the resumed run reads no
    record with `nick`: the table passes because the checkpoint kept the first batch's finding."""
    mapping = compile_mapping(parse_mapping(WORKER_MAPPING, "w.yaml"))
    data = [{"_id": 1, "nick": "a"}, {"_id": 2}, {"_id": 3}, {"_id": 4}, {"_id": 5}]
    source = ListSource("src", {"people": data}, batch_size=2, fail_after=1)
    sink = DictSink("mem", mapping.tables)
    store = open_store(SqliteConfig(), base_dir=tmp_path)
    try:
        partition = source.plan("people", 1)[0]

        def worker():
            return PartitionWorker(job="j", source=source, mapping=mapping, sinks={"mem": sink},
                                   dead_letters=MemoryDeadLetters(), store=store,
                                   control=RunControl(max_in_flight=2))

        with pytest.raises(ConnectionError):
            worker().run(PartitionWork(partition))
        checkpoint = store.checkpoints("j")[partition.id]
        assert checkpoint.resume_after == 2
        assert checkpoint.extra["present"] == ["outputs[0].columns.id.from=_id", NICK]
        source.fail_after = None
        counts = Counts.from_checkpoint(checkpoint.counts)
        resumed = PartitionWork(partition, checkpoint.resume_after, counts, present_of(checkpoint))
        outcome = worker().run(resumed)
        assert (outcome.done, outcome.run.extracted, outcome.counts.extracted) == (True, 3, 5)
        assert outcome.present == {NICK, "outputs[0].columns.id.from=_id"}
        plan = Plan("j", (TablePlan("src", "people", "w.yaml", 1, (partition,)),), None,
                    frozenset({partition.id}))
        reads = lambda source, table: mapping.reads  # noqa: E731
        assert unseen_paths(plan, reads, {}, [outcome]) == []
        # judged from the checkpoints alone (a later run, another shard): the same
        assert unseen_paths(plan, reads, store.checkpoints("j"), []) == []
        # a partition not done yet: the table is not judged
        assert unseen_paths(plan, reads, {}, []) == []
        # had the resumed run not been given what the checkpoint kept, `nick` would count as absent
        lost = worker().run(PartitionWork(partition, checkpoint.resume_after, counts))
        assert [str(item) for item in unseen_paths(plan, reads, {}, [lost])] == [
            "w.yaml:8:13: outputs[0].columns.nick: path `nick` is absent from all 5 records of src.people"]
    finally:
        store.close()


DUMP_MAPPING = textwrap.dedent("""\
    targets: {pg: postgres}
    outputs:
      - target: pg
        table: patients
        key: [id]
        columns:
          id: {from: _id, type: int}
          name: name
          late: late
    """)


@pytest.mark.parametrize(("check_sample", "warnings", "checked"), [
    (None, (), "sample of 6 records"),
    (3, (":9:13: patients.late: path `late` is absent from all 3 sampled records",), "sample of 3 records"),
])
def test_a_mongodump_table_is_sampled_as_its_check_sample_says(tmp_path, check_sample, warnings, checked):
    """Only the sixth document has `late`: the default sample (1000) reaches it, a sample of 3 does not."""
    from etl.engine.mapcheck import check_source_table
    from etl.engine.resources import JobResources
    from etl.job import load_job
    from tests.unit.test_mongodump import patients, write_dump

    documents = patients(6)
    documents[5]["late"] = "yes"
    write_dump(tmp_path / "dump", documents)
    (tmp_path / "m.yaml").write_text(DUMP_MAPPING)
    option = f", check_sample: {check_sample}" if check_sample else ""
    (tmp_path / "job.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        name: dumpcheck
        sources:
          dump:
            type: mongodump
            path: {tmp_path / "dump"}
            database: clinic
            tables:
              patients: {{mapping: m.yaml{option}}}
        targets:
          pg: {{type: postgres, dsn: "host=127.0.0.1 dbname=unused"}}
        """))
    resources = JobResources(load_job(tmp_path / "job.yaml"))
    source = resources.open_source("dump")
    try:
        fit = check_source_table(resources, source, "dump", "patients")
    finally:
        source.close()
    expected = tuple(f"{tmp_path / 'm.yaml'}{warning}" for warning in warnings)
    assert (fit.checked, fit.warnings, fit.unused) == (checked, expected, ("balance", "seen"))
    assert resources.source_fits["dump.patients"] is fit
