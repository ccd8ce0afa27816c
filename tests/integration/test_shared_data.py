"""The shared dataset itself (../shared/data/fake_reviews): it loads with the study's label map."""

import pandas as pd
import pytest

from core.data import load_reviews

pytestmark = pytest.mark.integration


def test_shared_dataset_loads_with_study_label_map(reviews_path):
    frame, report = load_reviews(reviews_path)
    raw = pd.read_csv(reviews_path)
    assert report.rows_read == len(raw) == 26939
    assert report.duplicates_dropped == raw["text_"].duplicated().sum() > 0
    assert len(frame) == report.rows_read - report.empty_dropped - report.duplicates_dropped
    # fake (CG) = 0, real (OR) = 1
    merged = frame.merge(raw.drop_duplicates("text_"), left_on="text", right_on="text_")
    assert ((merged["label_x"] == 0) == (merged["label_y"] == "CG")).all()
