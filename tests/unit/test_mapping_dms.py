"""AWS DMS object-mapping styles, written as YAML rules, give the items DMS would write."""

from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from etl.errors import MappingError
from etl.mapping import compile_mapping, load_mapping, parse_mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

ROW = {
    "CustomerId": 7,
    "FirstName": "Randy",
    "LastName": "Marsh",
    "StoreId": 5,
    "HomeAddress": "221B Baker St",
    "HomePhone": "1234567890",
    "WorkAddress": "31 Spooner St",
    "WorkPhone": "9876543210",
    "DateOfBirth": dt.datetime(1962, 2, 2),
    "InternalNotes": "n",
}


def key_text(row: dict) -> str:
    return f"CustomerId={row['CustomerId']}"


def test_map_record_to_record_with_templates_and_a_map_from_several_columns():
    mapping = compile_mapping(load_mapping(MAPPINGS / "dms_customer_record.yaml"))
    (table,) = mapping.tables
    assert (table.target, table.table, table.key) == ("dynamo", "customer_t", ("CustomerName", "StoreId"))
    assert [(c.name, c.type) for c in table.columns] == [
        ("CustomerName", "string"),
        ("StoreId", "decimal"),
        ("ContactDetails", "json"),
        ("DateOfBirth", "date"),
    ]
    batch = mapping.apply([ROW], key_text)
    assert batch.rejects == []
    assert batch.rows[("dynamo", "customer_t")].rows == [
        {
            "CustomerName": "Randy,Marsh",
            "StoreId": Decimal(5),
            "ContactDetails": {
                "Home": {"Address": "221B Baker St", "Phone": "1234567890"},
                "Work": {"Address": "31 Spooner St", "Phone": "9876543210"},
            },
            "DateOfBirth": dt.date(1962, 2, 2),
        }
    ]


def test_map_record_to_document_puts_every_column_not_excluded_in_doc():
    mapping = compile_mapping(load_mapping(MAPPINGS / "dms_customer_document.yaml"))
    batch = mapping.apply([ROW], key_text)
    assert batch.rows[("dynamo", "customer_docs")].rows == [
        {
            "CustomerName": "Randy,Marsh",
            "_doc": {  # DMS: every column not excluded, also those the attribute mappings read
                "CustomerId": 7,
                "FirstName": "Randy",
                "LastName": "Marsh",
                "StoreId": 5,
                "HomeAddress": "221B Baker St",
                "HomePhone": "******7890",
                "WorkAddress": "31 Spooner St",
                "WorkPhone": "9876543210",
                "DateOfBirth": dt.datetime(1962, 2, 2, tzinfo=dt.UTC),
            },
        }
    ]
    assert mapping.fields is None


def test_dms_rule_errors_name_the_place():
    text = textwrap.dedent("""\
        targets: {d: dynamodb}
        outputs:
          - target: d
            dms:
              rule-action: map-record-to-everything
              target-table-name: t
              mapping-parameters: {partition-key-name: id}
        """)
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "m.yaml")
    assert str(caught.value) == (
        "m.yaml:5:20: outputs[0].dms.rule-action: `rule-action` must be map-record-to-record or "
        "map-record-to-document\n  hint: write `rule-action: map-record-to-record`"
    )
    with pytest.raises(MappingError) as caught:
        parse_mapping(
            text.replace("map-record-to-everything", "map-record-to-record").replace(
                "{partition-key-name: id}", "{partition-key: id}"
            ),
            "m.yaml",
        )
    assert str(caught.value) == (
        "m.yaml:7:28: outputs[0].dms.mapping-parameters.partition-key: unknown key `partition-key` in "
        "mapping-parameters\n  hint: write `partition-key-name` instead"
    )
