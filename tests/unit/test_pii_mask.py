"""`mask: N` shows at most the last N characters and never more than half of a value's characters
(rounding down); N must be a whole number from 1 to 64, refused at load time with file:line:col."""

from __future__ import annotations

import textwrap

import pytest

from etl.errors import MappingError
from etl.mapping import compile_mapping, parse_mapping
from etl.mapping.pii import mask

MAPPING = """\
targets: {{pg: postgres}}
pii:
  phone: {{mask: {keep}}}
outputs:
  - target: pg
    table: t
    key: [id]
    columns:
      id: {{from: id, type: int}}
      phone: phone
"""


@pytest.mark.parametrize(("keep", "value", "masked"), [
    (4, "+1-555-0100", "*******0100"),
    (4, "12345678", "****5678"),
    (4, "1234567", "****567"),
    (4, "123456", "***456"),
    (3, "12345", "***45"),
    (1, "12", "*2"),
    (64, "12", "*2"),
    (1, "7", "*"),
    (64, "7", "*"),
    (4, "", ""),
    (64, "5550100", "****100"),
    (4, 5550100, "****100"),
])
def test_a_mask_shows_at_most_the_last_n_characters_and_never_more_than_half(keep, value, masked):
    assert mask(keep)(value) == masked


def test_a_mask_keeps_null():
    assert mask(4)(None) is None


@pytest.mark.parametrize("keep", [7, 8, 64])
def test_a_mask_as_long_as_the_value_still_hides_it(keep):
    mapping = compile_mapping(parse_mapping(MAPPING.format(keep=keep), "m.yaml"))
    batch = mapping.apply([{"id": 1, "phone": "5550100"}], lambda record: f"id={record['id']}")
    assert batch.rows[("pg", "t")].rows == [{"id": 1, "phone": "****100"}]
    assert mapping.safe_record({"id": 1, "phone": "5550100"}) == {"id": 1, "phone": "****100"}


@pytest.mark.parametrize("keep", ["0", "65", "-1", "true", "false", "2.5", '"4"', "[4]",
                                  pytest.param("9" * 4000, id="4000-digits")])
def test_a_mask_that_is_not_a_whole_number_from_1_to_64_is_refused_where_it_is_written(keep):
    with pytest.raises(MappingError) as caught:
        parse_mapping(MAPPING.format(keep=keep), "m.yaml")
    assert str(caught.value) == (
        "m.yaml:3:17: pii.phone.mask: mask keeps a whole number of last characters, from 1 to 64\n"
        "  hint: write e.g. `{mask: 4}`; at most half of a value's characters ever show"
    )


def test_a_mask_without_a_number_keeps_four():
    text = textwrap.dedent(MAPPING.format(keep=4)).replace("{mask: 4}", "mask")
    mapping = compile_mapping(parse_mapping(text, "m.yaml"))
    assert mapping.safe_record({"id": 1, "phone": "+1-555-0100"}) == {"id": 1, "phone": "*******0100"}
