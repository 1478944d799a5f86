"""A PII path through a value of the wrong shape rejects the record and drops that value: it may
hold the very value the rule protects."""

from __future__ import annotations

from etl.mapping import compile_mapping, parse_mapping

MAPPING = """\
targets: {pg: postgres}
pii:
  contacts[].email: {hmac: "${secret:k}"}
  address.phone: drop
outputs:
  - target: pg
    table: t
    key: [id]
    columns:
      id: {from: id, type: int}
      contacts: {from: contacts, type: json}
      address: {from: address, type: json}
"""


def mapping():
    return compile_mapping(parse_mapping(MAPPING, "m.yaml", resolve=lambda text, where: "key"))


def rejects(record: dict) -> list[tuple]:
    batch = mapping().apply([record], lambda r: f"id={r['id']}")
    return [(r.stage, r.field_path, r.value_type, r.reason, r.record) for r in batch.rejects]


def test_a_map_where_the_path_needs_a_list_is_dropped_from_the_reject():
    assert rejects({"id": 1, "contacts": {"email": "raw@x.example"}}) == [(
        "map", "contacts[].email", "dict",
        "pii `hmac` cannot apply: the path meets a dict where it needs a list",
        {"id": 1})]


def test_text_where_the_path_needs_a_map_is_dropped_from_the_reject():
    assert rejects({"id": 2, "contacts": ["raw@x.example", None]}) == [(
        "map", "contacts[].email", "str",
        "pii `hmac` cannot apply: the path meets a str where it needs a map",
        {"id": 2, "contacts": [None, None]})]


def test_a_drop_rule_removes_a_value_of_the_wrong_shape_and_null_stays():
    assert mapping().safe_record({"id": 3, "address": "raw 555-0100", "contacts": None}) == {
        "id": 3, "contacts": None}
    assert rejects({"id": 3, "address": "raw 555-0100", "contacts": None}) == []
