"""Key-range buckets (the same-engine mode): every key lands in exactly one range, and the ranges
of wanted buckets are merged exactly. (That SQL's width_bucket puts each row in the same bucket is
proven against PostgreSQL in tests/integration/test_checksum_postgres_ranges.py.)"""

from __future__ import annotations

from etl.checksum.keyranges import KeyRanges, range_count, ranges_for_rows


def test_ranges_span_both_sides_with_equal_widths() -> None:
    ranges = KeyRanges.spanning("id", [(1, 1000), (5, 1200)], 256)
    # 1200 keys in 256 buckets: width 5, thresholds 6, 11, ..., 1196.
    assert ranges.thresholds[:3] == (6, 11, 16)
    assert ranges.thresholds[-1] == 1196
    assert ranges.buckets == 240
    assert [ranges.bucket({"id": key}) for key in (1, 5, 6, 10, 11, 1195, 1196, 1200)] == [
        0, 0, 1, 1, 2, 238, 239, 239,
    ]


def test_fewer_keys_than_buckets_gives_one_key_per_bucket() -> None:
    ranges = KeyRanges.spanning("id", [(1, 3), (None, None)], 256)
    assert ranges.thresholds == (2, 3)
    assert [ranges.bucket({"id": key}) for key in (1, 2, 3)] == [0, 1, 2]


def test_keys_outside_the_span_fall_in_the_first_and_last_ranges() -> None:
    ranges = KeyRanges.spanning("id", [(10, 19)], 2)
    assert ranges.thresholds == (15,)
    assert [ranges.bucket({"id": key}) for key in (-(2**63), 14, 15, 2**63 - 1)] == [0, 0, 1, 1]


def test_two_empty_sides_have_one_bucket() -> None:
    ranges = KeyRanges.spanning("id", [(None, None), (None, None)], 256)
    assert (ranges.thresholds, ranges.buckets, ranges.bucket({"id": 7})) == ((), 1, 0)
    assert ranges.bounds({0}) == [(None, None)]


def test_the_whole_int8_range_stays_within_int8() -> None:
    ranges = KeyRanges.spanning("id", [(-(2**63), 2**63 - 1)], 256)
    assert ranges.buckets == 256
    assert all(-(2**63) < t < 2**63 - 1 for t in ranges.thresholds)
    assert (ranges.bucket({"id": -(2**63)}), ranges.bucket({"id": 2**63 - 1})) == (0, 255)


def test_bounds_of_wanted_buckets_merge_neighbours() -> None:
    ranges = KeyRanges("id", (10, 20, 30))
    assert ranges.bounds({0}) == [(None, 10)]
    assert ranges.bounds({1, 2}) == [(10, 30)]
    assert ranges.bounds({3}) == [(30, None)]
    assert ranges.bounds({0, 3}) == [(None, 10), (30, None)]
    assert ranges.bounds({2, 0, 1, 3}) == [(None, None)]
    assert ranges.bounds(set()) == []


def test_a_wide_key_span_is_cut_into_one_range_per_250_keys_up_to_4096() -> None:
    assert range_count([(1, 3000), (1, 2990)], 256) == 256  # 12 ranges of 250 keys: the buckets asked for
    assert range_count([(1, 100_000), (7, 100_001)], 256) == 401  # 100,001 keys, ceiling of /250
    assert range_count([(1, 1_000_000), (1, 1_000_000)], 256) == 4000
    assert range_count([(-(2**63), 2**63 - 1)], 256) == 4096
    assert range_count([(1, 10_000_000)], 8192) == 8192  # never fewer than asked for
    assert range_count([(None, None), (None, None)], 256) == 256


def test_quantiles_of_a_sample_cut_ranges_without_repeats() -> None:
    quantiles = [f"k{i // 2:03d}" for i in range(400)]  # 200 distinct values, each twice
    ranges = KeyRanges.at_quantiles("code", "text", quantiles, 8)
    assert ranges is not None
    assert (ranges.kind, ranges.buckets) == ("text", 8)
    assert ranges.thresholds == ("k025", "k050", "k075", "k100", "k125", "k150", "k175")
    assert [ranges.bucket({"code": key}) for key in ("", "k024", "k025", "k1", "k99", "\U0001f600")] == [
        0, 0, 1, 3, 7, 7]
    assert ranges.bounds({1, 2}) == [("k025", "k075")]


def test_a_leading_column_of_few_values_is_not_cut_into_ranges() -> None:
    regions = ["north"] * 100 + ["south"] * 100 + ["west"] * 100
    assert KeyRanges.at_quantiles("region", "text", regions, 64) is None
    assert KeyRanges.at_quantiles("customer", "int", range(1, 33), 64) is not None  # 32 of 64: half is enough
    assert KeyRanges.at_quantiles("customer", "int", range(1, 31), 64) is None


def test_a_large_table_is_cut_into_one_range_per_250_rows_up_to_4096() -> None:
    assert (ranges_for_rows(0, 256), ranges_for_rows(3000, 64)) == (256, 64)
    assert ranges_for_rows(100_001, 256) == 401
    assert (ranges_for_rows(10**9, 256), ranges_for_rows(10**9, 8192)) == (4096, 8192)
