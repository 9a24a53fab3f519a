"""Quality of the shipped tinyworld text-to-image model on held-out TEST captions. Writes
bench/results/t2i_quality.json and a sample grid bench/results/t2i_test_samples.png.

* Captions: the tinyworld caption grammar (mlr_core.data.tinyworld.caption_with_classes, every object named)
  applied to the benchmark's TEST scenes (regenerated from params.tinyworld: the same specs as the rendered
  test split); their labels are the scenes' labels. The model never saw a test scene or caption: it trains on
  part (a) only.
* A supervised classifier trained on real tinyworld images at the model's resolution (the 1,000 trainval
  images resized, plus freshly rendered scenes of a seed stream no tinyworld part uses): a linear probe on
  the frozen tinyworld CLIP's global image features (a from-scratch CNN did not reach a useful mAP in the
  few CPU minutes a bench can spend); its mAP on the real test images is the reference, its mAP on the
  synthetic images is the figure (bar >= 60).
* The tinyworld CLIP zero-shot mAP ("a photo of a {}.", global score as zsclip) on the synthetic images vs
  the real test images of the same scenes (bar: ratio >= 0.6), also vs real images passed through the same
  64 -> 128 px resize, which separates the cost of the lower resolution from the cost of the generator.
* Sampling speed: images/s at the pipeline's settings (steps, guidance, batch).

Usage: python bench/t2i_quality.py [--model models/tinyworld-t2i] [--n 500] [--steps 20] [--guidance 4]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from mlr_core.config import load_params
from mlr_core.data.datasets import load_from_params
from mlr_core.data.tinyworld import CLASSES, caption_with_classes, sample_scene, sample_scenes
from mlr_core.io import atomic_write_json
from mlr_core.methods.zsclip import zero_shot_scorer
from mlr_core.metrics import multilabel_metrics
from mlr_core.models.clip import load_clip
from mlr_core.models.features import encode_image_features
from mlr_core.models.pretrain import render_batch
from mlr_core.models.t2i import load_t2i
from mlr_core.models.t2i_pretrain import sample_grid, synthesize
from tinyworld_clip_quality import fit_probe  # noqa: E402  (bench/ is on sys.path when run as a script)

RESULTS = Path(__file__).parent / "results"
CLASSIFIER_STREAM = 9  # fresh training scenes for the classifier: no tinyworld part (1-4) nor other bench uses it
CAPTION_STREAM = 10  # the caption draws for the test scenes
PROBE_L2 = 0.0  # what bench/tinyworld_clip_quality.py selects on its held-out fifth for the same probe


def _load_images(paths, size: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((size, size), Image.LANCZOS)))
                        .permute(2, 0, 1) for p in paths])


def _pil_to_u8(images, size: int | None = None) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(im.convert("RGB").resize((size, size), Image.BICUBIC)
                                                  if size else im.convert("RGB"))).permute(2, 0, 1) for im in images])


@torch.no_grad()
def clip_features(clip, images_u8: torch.Tensor):
    """Global (B, D) and dense (B, HW, D) tinyworld-CLIP features; images are resized (bicubic) to the CLIP's size."""
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    g, d = [], []
    for i in range(0, len(images_u8), 128):
        x = images_u8[i:i + 128].float() / 255
        if x.shape[-1] != clip.image_size:
            x = F.interpolate(x, size=clip.image_size, mode="bicubic", align_corners=False).clamp(0, 1)
        f = encode_image_features(clip.model, (x - mean) / std)
        g.append(f.global_.float()), d.append(f.dense.float())
    return torch.cat(g), torch.cat(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/tinyworld-t2i")
    ap.add_argument("--n", type=int, default=500, help="test captions synthesised (one image each)")
    ap.add_argument("--steps", type=int, default=None, help="default: params t2i_pretrain.sample_steps")
    ap.add_argument("--guidance", type=float, default=None, help="default: params t2i_pretrain.guidance_scale")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--classifier-scenes", type=int, default=6000)
    ap.add_argument("--out", default=str(RESULTS / "t2i_quality.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    tw, tp, ds = params.tinyworld, params.t2i_pretrain, params.dataset
    steps = args.steps or tp.sample_steps
    guidance = args.guidance or tp.guidance_scale
    seed = tw.seed

    # held-out test captions, with labels: the benchmark's own test scenes
    test_scenes = sample_scenes(tw.n_test, seed, "test", tw.min_objects, tw.max_objects)[:args.n]
    rng = np.random.default_rng([seed, CAPTION_STREAM])
    captions, targets = [], np.zeros((len(test_scenes), len(CLASSES)), dtype=np.int8)
    for i, s in enumerate(test_scenes):
        cap, named = caption_with_classes(s, rng)
        assert sorted(named) == s.labels
        captions.append(cap)
        targets[i, s.labels] = 1
    data = load_from_params(ds)
    test = data.subset("test").select(range(len(test_scenes)))
    assert (test.targets == targets).all(), "the regenerated test scenes differ from the benchmark's"

    pipe = load_t2i(args.model, device="cpu", dtype="fp32")
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    t0 = time.time()
    synth = synthesize(pipe, captions, steps=steps, guidance_scale=guidance, seed=seed, batch_size=args.batch,
                       desc="bench: synthesise test captions")
    synth_s = time.time() - t0
    sample_grid(synth[:16], captions[:16], RESULTS / "t2i_test_samples.png")
    synth_u8 = _pil_to_u8(synth)

    mp, zs = params.model, params.evaluate.zeroshot
    clip = load_clip(mp.arch, mp.pretrained, "cpu")

    # supervised classifier: a linear probe on frozen tinyworld-CLIP features of REAL images at the generator's
    # resolution (trainval resized + freshly rendered scenes), as bench/tinyworld_clip_quality.py fits it
    trainval = data.subset("trainval")
    crng = np.random.default_rng([seed, CLASSIFIER_STREAM])
    fresh = [sample_scene(crng, tw.min_objects, tw.max_objects) for _ in range(args.classifier_scenes)]
    x_fit = torch.cat([_load_images(trainval.paths, size), render_batch(fresh, size, "bench: render classifier scenes")])
    y = np.zeros((len(x_fit), len(CLASSES)), dtype=np.float32)
    y[:len(trainval)] = trainval.targets
    for i, s in enumerate(fresh):
        y[len(trainval) + i, s.labels] = 1
    t1 = time.time()
    probe = fit_probe(F.normalize(clip_features(clip, x_fit)[0], dim=-1), torch.from_numpy(y), l2=PROBE_L2)
    clf_s = time.time() - t1
    x_real_test = _load_images(test.paths, size)
    real_g, real_d = clip_features(clip, _load_images(test.paths, clip.image_size))
    low_g, low_d = clip_features(clip, x_real_test)
    syn_g, syn_d = clip_features(clip, synth_u8)
    with torch.no_grad():
        sup_real = multilabel_metrics(probe(F.normalize(low_g, dim=-1)).numpy(), targets)["mAP"]
        sup_synth = multilabel_metrics(probe(F.normalize(syn_g, dim=-1)).numpy(), targets)["mAP"]

    # tinyworld CLIP zero-shot, as zsclip scores it (global prompt score)
    scorer = zero_shot_scorer(clip, data.classes, template=zs.template, scale=zs.scale,
                              local_temperature=zs.local_temperature, local_weight=zs.local_weight, use_local=False)
    zs_real = multilabel_metrics(scorer(real_g, real_d)[0].numpy(), targets)["mAP"]
    zs_real_lowres = multilabel_metrics(scorer(low_g, low_d)[0].numpy(), targets)["mAP"]
    zs_synth = multilabel_metrics(scorer(syn_g, syn_d)[0].numpy(), targets)["mAP"]

    result = {
        "model": args.model, "n_test_captions": len(captions), "image_size": size,
        "sampling": {"steps": steps, "guidance_scale": guidance, "batch_size": args.batch,
                     "scheduler": type(pipe.scheduler).__name__, "seconds": round(synth_s, 1),
                     "images_per_s": round(len(captions) / synth_s, 2), "torch_threads": torch.get_num_threads()},
        "supervised_classifier": {"kind": "linear probe on frozen tinyworld-CLIP global features, real images",
                                  "train_images": len(y), "l2": PROBE_L2,
                                  "train_minutes": round(clf_s / 60, 2), "mAP_real_test": round(sup_real, 2),
                                  "mAP_synthetic": round(sup_synth, 2)},
        "clip_zero_shot": {"mAP_real_test_128px": round(zs_real, 2), "mAP_real_test_at_t2i_size": round(zs_real_lowres, 2),
                           "mAP_synthetic": round(zs_synth, 2), "ratio_synthetic_vs_real": round(zs_synth / zs_real, 3),
                           "ratio_synthetic_vs_real_at_t2i_size": round(zs_synth / zs_real_lowres, 3)},
        "bars": {"supervised_mAP_synthetic": ">= 60", "clip_zero_shot_ratio": ">= 0.6"},
        "passes": {"supervised": sup_synth >= 60, "clip_ratio": zs_synth / zs_real >= 0.6},
        "cpu": {"threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }
    print(json.dumps(result, indent=2))
    atomic_write_json(Path(args.out), result)


if __name__ == "__main__":
    main()
