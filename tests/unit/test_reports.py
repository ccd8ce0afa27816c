"""Report points and rungs (core/reports.py) against Ray's own ASHA, and a trial's epoch cut into
report points (trainables/training.py)."""

import numpy as np
import pytest
from ray.tune.schedulers.async_hyperband import _Bracket

from core.reports import rung_points, scored_points
from trainables.training import epoch_segments


@pytest.mark.parametrize("grace,factor,last", [(1, 2, 16), (1, 3, 12), (2, 2, 8), (1, 2, 4), (3, 4, 100), (4, 2, 4)])
def test_rungs_are_the_points_where_ashas_bracket_decides(grace, factor, last):
    bracket = _Bracket(min_t=grace, max_t=last, reduction_factor=factor, s=0)
    decided = sorted(milestone for milestone, _ in bracket._rungs if milestone < last)
    assert rung_points(grace, factor, last) == decided


def test_scored_points_hold_the_first_point_every_rung_and_every_epoch_end():
    assert scored_points(8, 2, 1, 2) == {1, 2, 4, 8, 16}
    assert scored_points(4, 3, 2, 3) == {1, 2, 4, 6, 8, 12}
    assert scored_points(1, 2, 1, 2) == {1, 2}  # one point an epoch: every epoch, as before


@pytest.mark.parametrize("batches,parts,accumulation", [(13, 4, 1), (13, 4, 2), (8, 8, 1), (3, 2, 3), (40, 3, 4)])
def test_an_epoch_is_cut_into_report_points_of_whole_optimizer_steps_in_order(batches, parts, accumulation):
    epoch = [np.array([i]) for i in range(batches)]
    segments = epoch_segments(epoch, parts, accumulation)
    assert len(segments) == parts
    assert [int(b[0]) for segment in segments for b in segment] == list(range(batches))  # nothing lost or reordered
    steps = -(-batches // accumulation)
    sizes = [-(-len(segment) // accumulation) for segment in segments]
    assert sum(sizes) == steps and max(sizes) - min(sizes) <= 1  # as even as whole steps allow
    for segment in segments[:-1]:
        assert len(segment) % accumulation == 0  # an optimizer step never straddles a report point
