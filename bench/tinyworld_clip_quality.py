"""Quality of the shipped tinyworld CLIP on the tinyworld benchmark. Writes bench/results/tinyworld_clip.json.

* zero-shot mAP with "a photo of a {class}." (standard CLIP scoring, global feature) on the test split;
  the quality bar is 45..80 (useful, with headroom left for prompt tuning);
* a linear probe on the frozen global image features: one logistic regression per class (full-batch L-BFGS,
  L2 weight chosen on a held-out fifth of the probe's training set, never on test), trained on 6,000 scenes
  rendered from a seed stream no tinyworld part uses (the benchmark's 1,000 trainval images are too few for
  a 128-d probe of 20 classes: it overfits them), mAP on the test split; bar >= 85.

Usage: python bench/tinyworld_clip_quality.py [--params params.yaml]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from mlr_core.cache import FeatureCache, write_feature_cache
from mlr_core.config import load_params
from mlr_core.data.datasets import load_from_params
from mlr_core.data.tinyworld import CLASSES, sample_scene
from mlr_core.io import atomic_write_json
from mlr_core.methods.zsclip import zero_shot_scorer
from mlr_core.metrics import multilabel_metrics
from mlr_core.models.clip import load_clip
from mlr_core.models.features import encode_image_features
from mlr_core.models.pretrain import render_batch

RESULTS = Path(__file__).parent / "results" / "tinyworld_clip.json"
PROBE_SCENES = 6000
PROBE_STREAM = 6  # a seed stream no tinyworld part (1-4) nor the pretraining eval (5) uses


def probe_training_set(clip, n: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-normalised global features and multi-hot targets of ``n`` freshly rendered scenes."""
    rng = np.random.default_rng([seed, PROBE_STREAM])
    scenes = [sample_scene(rng) for _ in range(n)]
    images = render_batch(scenes, image_size, "render probe scenes")
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        x = torch.cat([encode_image_features(clip.model, (images[i:i + 256].float() / 255 - mean) / std).global_
                       for i in range(0, n, 256)])
    y = torch.zeros(n, len(CLASSES))
    for i, s in enumerate(scenes):
        y[i, s.labels] = 1
    return F.normalize(x, dim=-1), y


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int = 200) -> torch.nn.Linear:
    probe = torch.nn.Linear(x.shape[1], y.shape[1])
    opt = torch.optim.LBFGS(probe.parameters(), lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(probe(x), y) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = load_params(args.params)
    ds, mp = params.dataset, params.model
    torch.manual_seed(0)
    clip = load_clip(mp.arch, mp.pretrained, "cpu")
    data = load_from_params(ds)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_feature_cache(data.subset("test"), clip, Path(tmp) / "test.parquet", batch_size=128,
                                   shard_size=1024)
        test = FeatureCache(path).read(("global", "dense"))
    zs = params.evaluate.zeroshot
    result = {"arch": mp.arch, "weights": mp.pretrained, "dataset": ds.name}
    for name, use_local in (("zero_shot_mAP", False), ("zero_shot_dpt_mAP", True)):
        scorer = zero_shot_scorer(clip, data.classes, template=zs.template, scale=zs.scale,
                                  local_temperature=zs.local_temperature, local_weight=zs.local_weight,
                                  use_local=use_local)
        scores, _ = scorer(torch.from_numpy(test.global_.astype(np.float32)),
                           torch.from_numpy(test.dense.astype(np.float32)))
        result[name] = round(multilabel_metrics(scores.numpy(), test.labels)["mAP"], 2)

    x_fit, y_fit = probe_training_set(clip, PROBE_SCENES, params.tinyworld.image_size, params.tinyworld.seed)
    x_test = F.normalize(torch.from_numpy(test.global_.astype(np.float32)), dim=-1)
    n_fit = int(0.8 * len(x_fit))
    best = None
    for l2 in (0.0, 1e-6, 1e-5, 1e-4):  # chosen on the held-out fifth of the probe's training set
        probe = fit_probe(x_fit[:n_fit], y_fit[:n_fit], l2)
        with torch.no_grad():
            held = multilabel_metrics(probe(x_fit[n_fit:]).numpy(), y_fit[n_fit:].numpy().astype(np.int8))["mAP"]
        if best is None or held > best[1]:
            best = (l2, held)
    probe = fit_probe(x_fit, y_fit, best[0])
    with torch.no_grad():
        result["linear_probe_mAP"] = round(multilabel_metrics(probe(x_test).numpy(), test.labels)["mAP"], 2)
    result["linear_probe_l2"] = best[0]
    result["linear_probe_train_scenes"] = PROBE_SCENES
    result["bars"] = {"zero_shot_mAP": [45, 80], "linear_probe_mAP": ">= 85"}
    print(json.dumps(result, indent=2))
    atomic_write_json(RESULTS, result)


if __name__ == "__main__":
    main()
