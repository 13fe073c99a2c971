"""The standard next-click rule on hand-made masks whose next click is known by hand."""

import numpy as np
import pytest

from cdnet.clicks import Click
from cdnet.eval.clicker import error_distance, next_click


def square(shape, y0, x0, y1, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_first_click_is_positive_at_the_object_centre():
    gt = square((11, 11), 3, 3, 8, 8)  # 5x5 square, centre (5, 5) is 3 px from outside
    assert next_click(gt, np.zeros_like(gt)) == Click(5, 5, True)


def test_equal_maxima_go_to_the_first_pixel_in_row_major_order():
    gt = square((8, 8), 2, 2, 6, 6)  # 4x4: the 4 central pixels all have depth 2
    assert next_click(gt, np.zeros_like(gt)) == Click(3, 3, True)


def test_tie_between_false_negative_and_false_positive_goes_negative():
    gt = square((9, 20), 2, 2, 7, 7)
    pred = square((9, 20), 2, 12, 7, 17)  # same 5x5 shape, disjoint: equal maxima
    assert next_click(gt, pred) == Click(4, 14, False)
    # one pixel deeper false negative region breaks the tie towards positive
    gt2 = square((9, 20), 1, 1, 8, 8)
    assert next_click(gt2, pred) == Click(4, 4, True)


def test_larger_false_positive_region_gives_a_negative_click():
    gt = square((12, 24), 1, 1, 4, 4)  # small miss
    pred = gt | square((12, 24), 2, 10, 11, 19)  # big leak, 9x9, centre (6, 14)
    assert next_click(gt, pred) == Click(6, 14, False)


def test_ignored_pixels_are_not_errors():
    gt = square((12, 24), 1, 1, 10, 10)  # 9x9 miss, depth 5
    pred = square((12, 24), 4, 14, 9, 19)  # 5x5 leak, depth 3, centre (6, 16)
    assert next_click(gt, pred) == Click(5, 5, True)
    ignore = square((12, 24), 1, 2, 10, 10)  # leaves only column 1 of the miss: depth 1
    assert next_click(gt, pred, ignore) == Click(6, 16, False)


def test_image_border_counts_as_boundary():
    gt = square((10, 10), 0, 0, 4, 10)  # a band along the top edge, 4 rows
    dt = error_distance(gt)
    assert dt[0, 5] == 1.0 and dt[1, 5] == 2.0 and dt[3, 5] == 1.0  # padding: border at -1
    assert dt[1, 0] == 1.0  # left border too
    # without the padding the top row would be deepest (4 px from row 4); with it, row 1 is
    assert next_click(gt, np.zeros_like(gt)) == Click(1, 1, True)


def test_already_clicked_pixels_are_not_clicked_again():
    gt = square((11, 11), 3, 3, 8, 8)
    empty = np.zeros_like(gt)
    first = next_click(gt, empty)
    assert first == Click(5, 5, True)
    # centre suppressed: the next deepest pixels have depth 2; first in row-major order
    assert next_click(gt, empty, clicks=[first]) == Click(4, 4, True)
    # float click coordinates are rounded to their pixel
    assert next_click(gt, empty, clicks=[Click(5.2, 4.8, True)]) == Click(4, 4, True)


def test_no_click_when_nothing_is_left_to_correct():
    gt = square((11, 11), 3, 3, 8, 8)
    assert next_click(gt, gt.copy()) is None
    one = square((5, 5), 2, 2, 3, 3)
    assert next_click(one, np.zeros_like(one), clicks=[Click(2, 2)]) is None
    assert next_click(one, np.zeros_like(one), ignore=one) is None


def test_bad_shapes_are_rejected():
    gt = np.zeros((5, 5), bool)
    with pytest.raises(ValueError, match="shape"):
        next_click(gt, np.zeros((5, 6), bool))
    with pytest.raises(ValueError, match="2-D"):
        next_click(np.zeros((5, 5, 3), bool), np.zeros((5, 5, 3), bool))
    with pytest.raises(ValueError, match="ignore"):
        next_click(gt, gt, ignore=np.zeros((4, 5), bool))
