"""A whole AWS DMS table-mapping document, `nulls: omit`, and columns dropped without being listed."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal

import pytest

from etl.engine.mapcheck import against_catalogue
from etl.errors import MappingError
from etl.mapping import compile_mapping, parse_mapping
from etl.mapping.dms_document import DmsDocument, TableColumns
from etl.sources.base import Catalogue

SELECT_ALL = {
    "rule-type": "selection",
    "rule-id": "1",
    "rule-name": "1",
    "object-locator": {"schema-name": "test", "table-name": "%"},
    "rule-action": "include",
}
CUSTOMER = TableColumns(
    "test",
    "customer",
    (("CustomerId", True), ("FirstName", False), ("LastName", False), ("StoreId", True), ("Notes", False)),
    ("CustomerId",),
)


def document(*rules: dict) -> str:
    return json.dumps({"rules": [SELECT_ALL, *rules]}, indent=2)


def rows(spec, record: dict) -> tuple[list[dict], list[str]]:
    batch = compile_mapping(spec).apply([record], lambda r: f"CustomerId={r['CustomerId']}")
    ((_, table_rows),) = batch.rows.items()
    return table_rows.rows, [reject.reason for reject in batch.rejects]


def test_a_json_string_template_keeps_its_braces_and_a_null_leaves_the_attribute_out():
    rule = {
        "rule-type": "object-mapping",
        "rule-id": "2",
        "rule-name": "2",
        "rule-action": "map-record-to-record",
        "object-locator": {"schema-name": "test", "table-name": "customer"},
        "target-table-name": "c",
        "mapping-parameters": {
            "partition-key-name": "CustomerId",
            "exclude-columns": ["Notes"],
            "attribute-mappings": [
                {
                    "target-attribute-name": "Name",
                    "attribute-type": "scalar",
                    "attribute-sub-type": "string",
                    "value": '{"First":"${FirstName}","Last":"${LastName}"}',
                }
            ],
        },
    }
    spec = DmsDocument(document(rule), "t.json").spec(CUSTOMER, "dynamo")
    full = {"CustomerId": 1, "FirstName": "Randy", "LastName": "Marsh", "StoreId": 5, "Notes": "x"}
    assert rows(spec, full) == (
        [
            {
                "CustomerId": Decimal(1),
                "Name": '{"First":"Randy","Last":"Marsh"}',
                "FirstName": "Randy",
                "LastName": "Marsh",
                "StoreId": 5,
            }
        ],
        [],
    )
    assert rows(spec, {**full, "LastName": None, "StoreId": None}) == (
        [{"CustomerId": Decimal(1), "FirstName": "Randy"}],
        [],
    )


def test_without_an_object_mapping_rule_a_table_is_copied_keyed_by_its_primary_key():
    spec = DmsDocument(document(), "t.json").spec(CUSTOMER, "dynamo")
    (output,) = spec.outputs
    assert (output.table, output.key, output.nulls) == ("customer", ("CustomerId",), "omit")
    assert [column.name for column in output.columns] == [
        "CustomerId",
        "FirstName",
        "LastName",
        "StoreId",
        "Notes",
    ]
    keyless = TableColumns("test", "log", (("a", False), ("b", False), ("c", False)), ("a", "b", "c"))
    with pytest.raises(MappingError) as caught:
        DmsDocument(document(), "t.json").spec(keyless, "dynamo")
    assert caught.value.message == (
        "t.json:7:25: rules[0].object-locator: table test.log has no object-mapping rule, and its key "
        "(a, b, c) cannot be a DynamoDB key of one or two attributes"
    )


def test_selection_rules_with_wildcards_and_an_include_that_matches_nothing():
    exclude = {
        **SELECT_ALL,
        "rule-id": "2",
        "rule-action": "exclude",
        "object-locator": {"schema-name": "test", "table-name": "audit_%"},
    }
    tables = [("public", "x", False), ("test", "audit_log", False), ("test", "customer", False),
              ("test", "invoice", False), ("test", "totals", True)]
    assert DmsDocument(document(exclude), "t.json").select(tables) == [
        ("test", "customer"),
        ("test", "invoice"),
    ]
    missing = {**SELECT_ALL, "rule-id": "3", "object-locator": {"schema-name": "tset", "table-name": "%"}}
    with pytest.raises(MappingError) as caught:
        DmsDocument(document(missing), "t.json").select(tables)
    assert str(caught.value) == (
        "t.json:17:25: rules[1].object-locator: selection rule matches no table of the source (schema-name "
        "'tset', table-name '%')\n  hint: names match exactly, `%` matches any run of characters; tables and "
        "views: public.x, test.audit_log, test.customer, test.invoice, test.totals"
    )
    views = {**SELECT_ALL, "rule-id": "4", "object-locator": {"schema-name": "test", "table-name": "tot%",
                                                              "table-type": "all"}}
    assert DmsDocument(document(views), "t.json").select(tables) == [
        ("test", "audit_log"), ("test", "customer"), ("test", "invoice"), ("test", "totals")]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"rule-type": "table-settings", "rule-id": "9"},
            "t.json:14:20: rules[1].rule-type: rule-type 'table-settings' is not one etl can apply "
            "(table-settings: etl splits tables with `partitions:` in the job file)",
        ),
        (
            {
                "rule-type": "transformation",
                "rule-id": "9",
                "rule-target": "column",
                "rule-action": "change-data-type",
                "object-locator": {"schema-name": "%", "table-name": "%", "column-name": "x"},
            },
            "t.json:17:22: rules[1].rule-action: transformation `change-data-type` cannot be honoured by etl",
        ),
        (
            {
                "rule-type": "transformation",
                "rule-id": "9",
                "rule-target": "schema",
                "rule-action": "rename",
                "value": "s",
                "object-locator": {"schema-name": "%", "table-name": "%"},
            },
            "t.json:16:22: rules[1].rule-target: rule-target `schema` cannot be honoured",
        ),
        (
            {**SELECT_ALL, "filters": [{"filter-type": "source", "column-name": "x"}]},
            "t.json:22:18: rules[1].filters: selection filters are not applied by etl",
        ),
    ],
)
def test_rules_etl_cannot_honour_are_refused_by_name(rule, message):
    with pytest.raises(MappingError) as caught:
        DmsDocument(document(rule), "t.json")
    assert caught.value.message == message


def test_a_whole_document_where_a_mapping_is_expected_says_where_it_belongs():
    with pytest.raises(MappingError) as caught:
        parse_mapping(document(), "m.json")
    assert str(caught.value) == (
        "m.json:1:1: (top): this is an AWS DMS table-mapping document, not a mapping file\n  hint: give "
        "it to the source in the job file: `dms: {mapping: <file>.json, target: <DynamoDB target>}`"
    )
    with pytest.raises(MappingError) as caught:
        parse_mapping("targets: {d: dynamodb}\noutputs:\n  - target: d\n    dms: {rules: []}\n", "m.yaml")
    assert (
        caught.value.message
        == "m.yaml:4:10: outputs[0].dms: a whole DMS table-mapping document is not one rule"
    )


NATIVE = textwrap.dedent("""\
    targets: {d: dynamodb}
    outputs:
      - target: d
        table: people
        key: [pk]
        nulls: omit
        columns:
          pk: {template: "P#{id}"}
          name: {template: "{first} {last}"}
          phone: phone
          contact: {map: {home: home, work: work}}
    """)


def test_nulls_omit_leaves_null_attributes_members_and_templates_out():
    spec = parse_mapping(NATIVE, "m.yaml")
    record = {"CustomerId": 1, "id": 1, "first": "A", "last": None, "phone": None, "home": "h", "work": None}
    assert rows(spec, record) == ([{"pk": "P#1", "contact": {"home": "h"}}], [])
    assert rows(spec, {**record, "home": None}) == ([{"pk": "P#1"}], [])
    assert rows(spec, {**record, "id": None}) == ([], ["column `pk`: template field `id` is null"])
    kept = parse_mapping(NATIVE.replace("nulls: omit", "nulls: null"), "m.yaml")
    assert rows(kept, {**record, "last": "B"}) == (
        [{"pk": "P#1", "name": "A B", "phone": None, "contact": {"home": "h", "work": None}}],
        [],
    )


@pytest.mark.parametrize(
    ("target", "nulls", "message"),
    [
        ("d", "never", "m.yaml:6:12: outputs[0].nulls: `nulls` is `null` or `omit`"),
        (
            "p",
            "omit",
            "m.yaml:6:12: outputs[0].nulls: `nulls: omit` applies to DynamoDB outputs: a PostgreSQL "
            "row has every column",
        ),
    ],
)
def test_nulls_is_null_or_omit_and_omit_only_for_dynamodb(target, nulls, message):
    text = (
        NATIVE.replace("targets: {d: dynamodb}", "targets: {d: dynamodb, p: postgres}")
        .replace("nulls: omit", f"nulls: {nulls}")
        .replace("  - target: d", f"  - target: {target}")
    )
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "m.yaml")
    assert caught.value.message == message


CATALOGUE = Catalogue(("id", "first", "last", "phone", "home", "work", "secret"), "the table", str.__eq__)


def test_columns_no_output_reads_are_a_warning_unless_listed_in_source_ignore():
    mapping = compile_mapping(parse_mapping(NATIVE, "m.yaml"))
    assert against_catalogue(mapping, CATALOGUE, "s.t").warnings == (
        "source columns no output reads and `source.ignore` does not list: secret; "
        "their values reach no target",
    )
    listed = compile_mapping(parse_mapping("source: {ignore: [secret]}\n" + NATIVE, "m.yaml"))
    assert against_catalogue(listed, CATALOGUE, "s.t").warnings == ()


def test_a_dms_record_rule_that_would_drop_columns_is_refused():
    rule = ("{rule-action: map-record-to-record, target-table-name: t, mapping-parameters: "
            "{partition-key-name: id, exclude-columns: [secret], copy-columns: {first: string}}}")
    text = f"targets: {{d: dynamodb}}\noutputs:\n  - target: d\n    dms: {rule}\n"
    mapping = compile_mapping(parse_mapping(text, "m.yaml"))
    with pytest.raises(MappingError) as caught:
        against_catalogue(mapping, CATALOGUE, "s.t")
    assert caught.value.message == (
        "m.yaml:3:5: outputs[0]: the DMS map-record-to-record rule leaves column(s) home, last, phone, "
        "work of the table neither copied nor excluded; DMS would copy them"
    )


CONDITIONAL = textwrap.dedent("""\
    targets: {d: dynamodb, p: postgres}
    outputs:
      - target: d
        table: people
        key: [pk]
        condition:
          expression: "attribute_not_exists(#v) or #v < :v"
          names: {"#v": version}
          values: {":v": {from: version, type: int}}
        columns:
          pk: {template: "P#{id}"}
          version: {from: version, type: int}
    """)


def test_a_condition_is_the_tables_and_each_row_carries_its_values():
    mapping = compile_mapping(parse_mapping(CONDITIONAL, "m.yaml"))
    (table,) = mapping.tables
    assert (table.condition.expression, table.condition.names, table.condition.values) == (
        "attribute_not_exists(#v) or #v < :v", (("#v", "version"),), (":v",))
    assert [column.name for column in table.columns] == ["pk", "version"]
    assert rows(parse_mapping(CONDITIONAL, "m.yaml"), {"CustomerId": 1, "id": 1, "version": "3"}) == (
        [{"pk": "P#1", "version": 3, ":v": 3}], [])


@pytest.mark.parametrize(("change", "message"), [
    (("#v < :v", "#v < :w"),
     "m.yaml:7:19: outputs[0].condition.expression: `:w` is not defined under `values`"),
    (("target: d", "target: p"), "m.yaml:7:7: outputs[0].condition: a condition applies to DynamoDB writes"),
])
def test_a_condition_defines_every_placeholder_and_writes_only_dynamodb(change, message):
    with pytest.raises(MappingError) as caught:
        parse_mapping(CONDITIONAL.replace(*change), "m.yaml")
    assert caught.value.message == message


def transformation(rule_id: str, target: str, action: str, value: str | None = None, **locator: str) -> dict:
    rule = {"rule-type": "transformation", "rule-id": rule_id, "rule-name": rule_id, "rule-target": target,
            "rule-action": action,
            "object-locator": {"schema-name": "test", "table-name": "customer", **locator}}
    return rule if value is None else {**rule, "value": value}


def test_transformations_apply_in_order_each_locating_source_names():
    text = document(
        transformation("2", "column", "rename", "Surname", **{"column-name": "LastName"}),
        transformation("3", "column", "add-prefix", "c_", **{"column-name": "%Name"}),
        transformation("4", "column", "remove-column", **{"column-name": "Notes"}),
        transformation("5", "table", "convert-uppercase"),
        transformation("6", "table", "add-suffix", "_v2"),
    )
    (output,) = DmsDocument(text, "t.json").spec(CUSTOMER, "dynamo").outputs
    assert (output.table, output.key) == ("CUSTOMER_v2", ("CustomerId",))
    assert [(c.name, c.path.text) for c in output.columns] == [
        ("CustomerId", "CustomerId"), ("c_FirstName", "FirstName"), ("c_Surname", "LastName"),
        ("StoreId", "StoreId")]
