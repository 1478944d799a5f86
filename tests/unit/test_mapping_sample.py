"""check_against_sample: paths no sample record has, and samples the mapping would reject."""

from __future__ import annotations

import textwrap

import pytest

from etl.errors import MappingError
from etl.mapping import check_against_sample, compile_mapping, parse_mapping

TEXT = textwrap.dedent("""\
    targets: {pg: postgres}
    outputs:
      - target: pg
        table: t
        key: [id]
        columns:
          id: {from: id, type: int}
          city: adress.city
          total: {from: total, type: "decimal(4,2)"}
      - target: pg
        table: items
        explode: items[]
        parent: t
        columns:
          sku: skus
    """)
SAMPLE = [
    {"id": 1, "address": {"city": "Oslo"}, "total": "1.5", "items": [{"sku": "a"}]},
    {"id": 2, "address": {"city": "Rome"}, "total": "123.5", "items": []},
]


def test_findings_name_the_place_and_suggest():
    findings = check_against_sample(parse_mapping(TEXT, "m.yaml"), SAMPLE)
    assert [str(finding) for finding in findings] == [
        "m.yaml:8:13: t.city: path `adress.city` is absent from all 2 sampled records; "
        "did you mean `address`?",
        "m.yaml:15:12: items.sku: path `skus` is absent from all 1 sampled elements; did you mean `sku`?",
        "m.yaml: 1 of 2 sample records would be rejected: `total` as decimal(4,2): the number has more "
        "than 2 digits before the point and does not fit decimal(4,2)",
    ]


def test_strict_raises_one_error_listing_all():
    with pytest.raises(MappingError) as caught:
        check_against_sample(compile_mapping(parse_mapping(TEXT, "m.yaml")), SAMPLE, strict=True)
    assert str(caught.value).startswith("m.yaml: the mapping does not fit the sample:\n  m.yaml:8:13: t.city")


def test_a_fitting_mapping_has_no_findings():
    fixed = TEXT.replace("adress", "address").replace("sku: skus", "sku: sku").replace("4,2", "6,2")
    assert check_against_sample(parse_mapping(fixed, "m.yaml"), SAMPLE) == []
    assert check_against_sample(parse_mapping(fixed, "m.yaml"), []) == []
