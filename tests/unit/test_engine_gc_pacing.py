"""A run collects cyclic garbage less often, and gives the process its own setting back."""

import gc

import pytest

from etl.engine.gc_pacing import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture
def threshold():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_default_pace_is_raised_for_the_run_and_restored(threshold):
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_error(threshold):
    gc.set_threshold(700, 5, 7)
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("partition failed")
    assert gc.get_threshold() == (700, 5, 7)


@pytest.mark.parametrize("setting", [(0, 10, 10), (100_000, 10, 10)])
def test_collection_off_or_already_rarer_is_left_alone(threshold, setting):
    gc.set_threshold(*setting)
    with fewer_collections():
        assert gc.get_threshold() == setting
    assert gc.get_threshold() == setting


def test_a_setting_changed_during_the_run_is_kept(threshold):
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        gc.set_threshold(1234, 10, 10)
    assert gc.get_threshold() == (1234, 10, 10)
