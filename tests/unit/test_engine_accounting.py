"""Accounting: figures that do not balance fail the run, naming the table and the four figures."""

from __future__ import annotations

import pytest

from etl.engine.accounting import MAX_REASONS, OTHER_REASONS, Counts, check_accounting
from etl.errors import RuntimeFailure


def test_balanced_tables_pass():
    check_accounting({"mongo.a": Counts(10, 7, 2, 1), "mongo.b": Counts(0, 0, 0, 0)})


def test_an_unbalanced_table_fails_the_run_naming_its_figures():
    with pytest.raises(RuntimeFailure) as caught:
        check_accounting({"mongo.a": Counts(10, 7, 2, 1), "mongo.b": Counts(10, 9, 2, 0)})
    assert caught.value.message == ("record accounting does not balance (mongo.b: extracted 10 != loaded 9 "
                                    "+ rejected 2 + filtered 0)")
    assert caught.value.exit_code == 3


def test_checkpoint_form_round_trips_with_rows_per_target_table():
    counts = Counts(5, 4, 1, 0, {"pg.customers": 4, "dynamo.t": 9}, {"bad date": 1})
    stored = counts.to_checkpoint()
    assert stored == {"extracted": 5, "loaded": 4, "rejected": 1, "filtered": 0, "rows:pg.customers": 4,
                      "rows:dynamo.t": 9}
    assert Counts.from_checkpoint(stored, {"bad date": 1}) == counts


def test_reject_reasons_are_bounded():
    counts = Counts()
    counts.add_reasons({f"reason {i}": 1 for i in range(MAX_REASONS + 5)})
    counts.add_reasons({"reason 0": 2})
    assert len(counts.reasons) == MAX_REASONS + 1
    assert counts.reasons[OTHER_REASONS] == 5
    assert counts.reasons["reason 0"] == 3
    assert counts.top_reasons(1) == [(OTHER_REASONS, 5)]
