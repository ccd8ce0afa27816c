import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from tests.conftest import ROOT
from tune.ray_setup import TRIAL_DRIVER

SCHEMA = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-aws.yaml"])
def test_cluster_configs_pass_rays_own_schema_and_give_only_the_head_trial_driver_slots(name):
    config = yaml.safe_load((ROOT / name).read_text())
    jsonschema.validate(config, SCHEMA)
    if "available_node_types" in config:
        slots = {node: spec["resources"].get(TRIAL_DRIVER, 0) for node, spec in config["available_node_types"].items()}
        assert slots[config["head_node_type"]] > 0 and sum(slots.values()) == slots[config["head_node_type"]]
    else:
        assert f'--resources=\'{{"{TRIAL_DRIVER}": ' in " ".join(config["head_start_ray_commands"])
        assert TRIAL_DRIVER not in " ".join(config["worker_start_ray_commands"])


def test_every_node_installs_this_checkout():
    for name in ("cluster.yaml", "cluster-aws.yaml"):
        config = yaml.safe_load((ROOT / name).read_text())
        assert config["file_mounts"] == {"~/review-qlora-search": "."}
        assert "pip install -e ~/review-qlora-search" in " ".join(config["setup_commands"])
