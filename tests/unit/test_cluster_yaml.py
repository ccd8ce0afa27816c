import json
from pathlib import Path

import jsonschema
import ray
import yaml

from tests.conftest import ROOT
from tune.search import TRIAL_DRIVER


def test_cluster_yaml_passes_rays_own_schema_and_gives_the_head_trial_driver_slots():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    head_start = " ".join(config["head_start_ray_commands"])
    assert f'--resources=\'{{"{TRIAL_DRIVER}": ' in head_start
