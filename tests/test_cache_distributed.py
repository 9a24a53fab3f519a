"""Data-parallel feature caching: two CPU processes (torchrun, joined by accelerate) write the same cache
as one process."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mlr_core.cache import FeatureCache

DRIVER = textwrap.dedent("""
    import sys, torch
    from mlr_core.cache import write_feature_cache
    from mlr_core.shards import launched_processes
    from mlr_core.data.manifest import read_manifest
    from mlr_core.models.clip import load_clip
    torch.set_num_threads(1)  # same kernels in every process, so features are bitwise comparable
    root, out = sys.argv[1], sys.argv[2]
    state = launched_processes("cpu")
    data = read_manifest(f"{root}/benchmark/manifest.csv", f"{root}/benchmark/classes.txt").subset("test")
    torch.manual_seed(0)
    clip = load_clip("tinyworld-RN", None, "cpu")
    write_feature_cache(data, clip, out, batch_size=3, shard_size=3, processes=state)
    print(f"rank {state.process_index} of {state.num_processes} done")
""")


@pytest.mark.slow
def test_two_processes_write_the_single_process_cache(tmp_path):
    from mlr_core.data.tinyworld import write_tinyworld

    write_tinyworld(tmp_path / "tw", seed=2, image_size=64, min_objects=1, max_objects=4, n_corpus=0,
                    captions_per_scene=1, n_trainval=1, n_test=11)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    bin_dir = Path(sys.executable).parent
    subprocess.run([sys.executable, driver, tmp_path / "tw", tmp_path / "one.parquet"], check=True)
    launched = subprocess.run([bin_dir / "torchrun", "--nproc_per_node", "2", "--master_port", "29517", driver,
                               tmp_path / "tw", tmp_path / "two.parquet"], capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "rank 0 of 2 done" in launched.stdout and "rank 1 of 2 done" in launched.stdout
    one = FeatureCache(tmp_path / "one.parquet").read(("global", "dense"))
    two = FeatureCache(tmp_path / "two.parquet").read(("global", "dense"))
    assert one.image_ids == two.image_ids and len(one.image_ids) == 11
    assert np.array_equal(one.labels, two.labels)
    assert np.array_equal(one.global_, two.global_) and np.array_equal(one.dense, two.dense)
