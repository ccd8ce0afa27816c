"""A baseline that raises in its Ray task: the search's end records why and finishes, and a
resume does not run it again. A real local Ray instance and a real failing fit (its data is missing)."""

import pytest
import ray

from core.record import load_records, read_record
from core.run_folder import RunFolder
from results.leaderboard import failure_lines
from trainables.baselines import BaselineConfig
from tune.baseline_tasks import finish_baselines, launch_baselines

pytestmark = pytest.mark.integration


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False)
    yield
    ray.shutdown()


def test_a_failing_baseline_is_recorded_and_not_rerun(local_ray, tmp_path, capsys):
    folder = RunFolder(str(tmp_path / "run"))
    config = BaselineConfig(method="tfidf-logreg", data_dir=str(tmp_path / "no-data"), split_hash="abc")
    configs = [("tfidf-logreg-0", config)]
    pending = launch_baselines(configs, folder)
    finish_baselines(pending, folder)  # returns instead of raising
    record = read_record(folder.baseline_record("tfidf-logreg-0"))
    assert record["status"] == "failed" and "split.parquet" in record["error"]
    assert "Baseline tfidf-logreg-0 failed" in capsys.readouterr().out
    assert launch_baselines(configs, folder) == []  # a resume skips it
    assert any("tfidf-logreg-0" in line for line in failure_lines(load_records(folder.path)))
