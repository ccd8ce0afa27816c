"""results.predict --ray: Ray Data reads the input, actors that each load the bundle once score it,
and the rows come back in input order with the probabilities of the single-process path; a folder
of files, CSV read as text, a bucket, a two-node cluster, and the refusals."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core import storage
from tests.conftest import ROOT, local_cluster
from tests.integration.test_object_storage import BUCKET, s3_env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "results.predict", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def probabilities(path) -> np.ndarray:
    frame = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path, keep_default_na=False)
    return pd.to_numeric(frame["prob_real"].replace("", np.nan)).to_numpy(dtype=float)


@pytest.fixture(scope="module")
def bundle(smoke_run, tmp_path_factory):
    """The smoke search's best fine-tune, exported."""
    folder = tmp_path_factory.mktemp("bundle") / "bundle"
    exported = subprocess.run([sys.executable, "-m", "results.export", str(smoke_run[0]), "--out", str(folder)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def reviews(reviews_path) -> pd.DataFrame:
    """6,000 reviews of the shared dataset, with a null, a blank, a review that spans lines and
    quotes, and texts a CSV reader would take for a number or a missing value."""
    frame = pd.read_csv(reviews_path).sample(6000, random_state=7).reset_index(drop=True)
    frame.loc[[3, 4, 5, 6, 7], "text_"] = [None, "   ", 'first line\nsecond, "quoted" line', "NA", "12345"]
    return frame


def test_6000_rows_of_parquet_on_ray_come_back_in_order_with_the_single_process_probabilities(bundle, reviews,
                                                                                              tmp_path):
    source = tmp_path / "6000.parquet"
    reviews.to_parquet(source)
    single = run(bundle, source, "--out", tmp_path / "single.csv")
    assert single.returncode == 0, single.stderr[-2000:]
    on_ray = run(bundle, source, "--ray", "--out", tmp_path / "ray.parquet")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert "6000 rows classified on Ray" in on_ray.stdout and "2 without text" in on_ray.stdout
    ours, theirs = pd.read_parquet(tmp_path / "ray.parquet"), pd.read_csv(tmp_path / "single.csv", keep_default_na=False)
    assert len(ours) == 6000 and ours["row"].tolist() == list(range(6000))
    assert ours["text"].tolist() == theirs["text"].tolist() and ours["label"].tolist() == theirs["label"].tolist()
    # Both score in float32, where a review's probability does not depend on its batch mates
    # (measured: 1e-7); bf16 moves it by up to ~5e-4 with the batch (results/predict.py, --bf16).
    np.testing.assert_allclose(ours["prob_real"].to_numpy(), probabilities(tmp_path / "single.csv"), atol=1e-6)
    assert np.isnan(ours["prob_real"][[3, 4]]).all() and not np.isnan(ours["prob_real"][[5, 6, 7]]).any()
    assert set(ours["path"]) == {str(source)}


def write_parts(frame: pd.DataFrame, folder, parts: int = 3):
    """`frame` as CSV files of a folder in path order, beside a file Ray and we both skip."""
    folder.mkdir()
    for index, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[part].to_csv(folder / f"part-{index:02d}.csv", index=False)
    (folder / "_SUCCESS").write_text("")
    return sorted(folder.glob("part-*.csv"))


def test_a_folder_a_bucket_and_a_two_node_cluster_read_in_path_order(bundle, reviews, s3_env, tmp_path):  # noqa: F811
    frame = reviews.iloc[:600]
    parts = write_parts(frame, tmp_path / "reviews")
    frame.to_csv(tmp_path / "all.csv", index=False)
    single = run(bundle, tmp_path / "all.csv", "--out", tmp_path / "single.csv")
    assert single.returncode == 0, single.stderr[-2000:]
    expected = probabilities(tmp_path / "single.csv")

    folder = run(bundle, tmp_path / "reviews", "--ray", "--out", tmp_path / "folder.csv")
    assert folder.returncode == 0, folder.stderr[-3000:]
    written = pd.read_csv(tmp_path / "folder.csv", keep_default_na=False)
    assert written["row"].tolist() == list(range(600))
    assert written["path"].tolist() == [str(path) for path in parts for _ in range(200)]
    assert written["text"].tolist()[5:8] == ['first line\nsecond, "quoted" line', "NA", "12345"]  # read as text
    np.testing.assert_allclose(probabilities(tmp_path / "folder.csv"), expected, atol=1e-6)

    for path in parts:
        storage.write_bytes(f"s3://{BUCKET}/reviews/{path.name}", path.read_bytes())
    bucket = run(bundle, f"s3://{BUCKET}/reviews/", "--ray", "--out", tmp_path / "bucket.parquet", env=s3_env)
    assert bucket.returncode == 0, bucket.stderr[-3000:]
    np.testing.assert_allclose(probabilities(tmp_path / "bucket.parquet"), expected, atol=1e-6)

    cluster = local_cluster(num_cpus=1)  # a head and a worker node: reads on one, an actor on the other
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        joined = run(bundle, tmp_path / "reviews", "--ray", "--address", cluster.address,
                     "--out", tmp_path / "cluster.parquet")
    finally:
        cluster.shutdown()
    assert joined.returncode == 0, joined.stderr[-3000:]
    np.testing.assert_allclose(probabilities(tmp_path / "cluster.parquet"), expected, atol=1e-6)


def test_what_ray_cannot_read_or_load_is_refused_in_one_line(bundle, reviews, tmp_path):
    mixed = tmp_path / "mixed"
    write_parts(reviews.iloc[:20], mixed, parts=1)
    reviews.iloc[:20].to_json(mixed / "more.jsonl", orient="records", lines=True)
    lines = tmp_path / "reviews.txt"
    lines.write_text("great product\nterrible\n")
    refusals = {"mixes formats (csv, jsonl)": [mixed, "--ray", "--out", tmp_path / "x.csv"],
                "a .txt is read without --ray": [lines, "--ray", "--out", tmp_path / "x.csv"],
                "name a .parquet or .csv file": [mixed / "part-00.csv", "--ray", "--out", tmp_path / "x.json"],
                "Input not found": [tmp_path / "nothing-here", "--ray", "--out", tmp_path / "x.csv"],
                "pass --ray with it": [lines, "--address", "auto"]}
    for says, args in refusals.items():
        result = run(bundle, *args)
        assert result.returncode == 2 and says in result.stderr.strip().splitlines()[-1], (says, result.stderr[-1500:])
        assert "Traceback" not in result.stderr
    # A bundle whose weights were cut short fails in the actors that load it: the driver says so as
    # the single-process path does, and leaves no output behind.
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in bundle.rglob("*"):
        target = broken / path.relative_to(bundle)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            data = path.read_bytes()
            target.write_bytes(data[:len(data) // 2] if path.suffix == ".safetensors" else data)
    result = run(broken, mixed / "part-00.csv", "--ray", "--out", tmp_path / "broken.csv")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: Bundle {broken} could not be loaded")
    assert not list(tmp_path.glob("broken.csv*"))
