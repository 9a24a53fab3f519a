"""The tinyworld text-to-image provisioning: tokenizer and text tower equal open_clip's, tiny pipelines
round-trip through DiffusionPipeline.from_pretrained, training resumes from its checkpoint exactly."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file

from mlr_core.models import t2i_pretrain
from mlr_core.models.t2i import (T2IUnavailableError, assemble_pipeline, build_clip_tokenizer, build_scheduler,
                                 build_unet, build_vae, convert_open_clip_text, load_t2i, save_pipeline)

CAPTIONS = ["a photo of two red stars, a bell and an hourglass.", "we can see three small navy egg timers next to a bow tie.",
            "A Cartoon starring an ARROW!", "", "a close up photo of " + ", ".join(["a diamond"] * 20) + "."]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_clip_tokenizer(tmp_path_factory.mktemp("tok"), context_length=32)


def test_tokenizer_matches_open_clip(tokenizer):
    ref = open_clip.get_tokenizer("tinyworld-RN")(CAPTIONS)  # context 32; the last caption is truncated
    ids = tokenizer(CAPTIONS, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    assert ids.shape == ref.shape == (len(CAPTIONS), 32)
    content = ref != 0  # open_clip pads with 0, the HF tokenizer with <|endoftext|> (49407)
    assert torch.equal(ids[content], ref[content])
    assert (ids[~content] == 49407).all() and (ref[:, -1] == 49407).any()  # the long caption is truncated


def test_text_encoder_equals_open_clip_text_tower():
    torch.manual_seed(0)
    model = open_clip.create_model("tinyworld-RN", pretrained=None).eval()
    with torch.no_grad():  # random, non-trivial LayerNorm parameters too
        for n, p in model.named_parameters():
            if "ln_" in n:
                p.add_(0.1 * torch.randn_like(p))
    enc = convert_open_clip_text(model.state_dict(), "tinyworld-RN")
    ids = open_clip.get_tokenizer("tinyworld-RN")(CAPTIONS)
    with torch.no_grad():
        x = model.token_embedding(ids) + model.positional_embedding
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))  # open_clip's per-token features
        out = enc(ids)
        torch.testing.assert_close(out.last_hidden_state, x, atol=1e-5, rtol=1e-5)
        # pooling at the end-of-text token + the CLIP projection gives open_clip's text embedding
        torch.testing.assert_close(out.pooler_output @ model.text_projection, model.encode_text(ids), atol=1e-5, rtol=1e-5)


def _tiny_pipeline(tokenizer):
    model = open_clip.create_model("tinyworld-RN", pretrained=None)
    enc = convert_open_clip_text(model.state_dict(), "tinyworld-RN")
    vae = build_vae(channels=(8, 16), norm_groups=4, sample_size=32)
    unet = build_unet(sample_size=16, channels=(16, 32), cross_attn=(False, True), head_dim=8, norm_groups=8,
                      cross_attention_dim=128)
    return assemble_pipeline(tokenizer, enc, vae, unet, build_scheduler("dpm"))


def test_tiny_pipeline_round_trip(tokenizer, tmp_path):
    save_pipeline(_tiny_pipeline(tokenizer), tmp_path / "t2i", fp16=True)
    assert json.loads((tmp_path / "t2i" / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert load_file(str(tmp_path / "t2i" / "unet" / "diffusion_pytorch_model.safetensors"))["conv_in.weight"].dtype == torch.float16
    pipe = load_t2i(tmp_path / "t2i", device="cpu", dtype="fp32")
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    images = pipe(["a red star", "two bells"], num_inference_steps=2, guidance_scale=3.0,
                  generator=torch.Generator().manual_seed(0)).images
    assert [im.size for im in images] == [(32, 32), (32, 32)]  # 16x16 latents, one halving
    assert np.asarray(images[0]).std() > 0
    from diffusers import DiffusionPipeline  # the stock loader reads it too

    assert type(DiffusionPipeline.from_pretrained(str(tmp_path / "t2i"))).__name__ == "StableDiffusionPipeline"


def test_load_t2i_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(T2IUnavailableError, match="nobody-xyz/no-such-t2i-model"):
        load_t2i("nobody-xyz/no-such-t2i-model", device="cpu")
    with pytest.raises(T2IUnavailableError, match="model_index.json"):
        load_t2i(tmp_path / "missing", device="cpu")


def test_a_mistyped_local_folder_is_not_taken_for_a_hub_id(monkeypatch, tmp_path):
    """"models/tinyworld-t2l" has one "/" like a hub id; its first part is a local folder, so it is a folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "tinyworld-t2i").mkdir(parents=True)
    with pytest.raises(T2IUnavailableError, match=r"synthesis.model='models/tinyworld-t2l': no diffusers pipeline "
                                                  r"folder there .*did you mean 'models/tinyworld-t2i'"):
        load_t2i("models/tinyworld-t2l", device="cpu")


_TINY = dict(arch="tinyworld-RN", clip_checkpoint=None, seed=0, image_size=32, n_scenes=24, vae_channels=[8, 16],
             vae_norm_groups=4, latent_channels=4, vae_steps=2, vae_batch_size=4, vae_lr=1e-3, kl_weight=1e-3,
             decoder_steps=2, decoder_batch_size=4, decoder_lr=1e-3,
             unet_channels=[16, 32], unet_cross_attn=[False, True], unet_layers_per_block=1, unet_head_dim=8,
             unet_norm_groups=8, steps=4, unet_restarts=[2], batch_size=4, lr=1e-3, warmup_steps=1,
             weight_decay=0.01, ema_decay=0.9, cond_drop_prob=0.5, snr_gamma=5.0, partial_caption_prob=0.0,
             bf16=True, ckpt_every=1, sample_steps=2, guidance_scale=2.0, scheduler="dpm", n_eval=4, n_grid=4)


def _scenes(tmp_path):
    rng = np.random.default_rng(0)
    return [t2i_pretrain.sample_scene(rng) for _ in range(24)]


def test_lr_schedule_warm_restarts():
    lr_at = t2i_pretrain._lr_at
    assert [lr_at(s, 1.0, 2, 10, ()) for s in range(10)] == [lr_at(s, 1.0, 2, 10) for s in range(10)]
    restarted = [lr_at(s, 1.0, 2, 10, (6,)) for s in range(10)]
    assert restarted[:6] == [lr_at(s, 1.0, 2, 6) for s in range(6)]  # the first cycle ends at the restart
    assert restarted[6:] == [lr_at(s, 1.0, 2, 4) for s in range(4)]  # the second warms up again
    assert restarted[5] < restarted[6] == 0.5 and restarted[7] == 1.0


def test_training_resumes_from_checkpoint(tmp_path, monkeypatch):
    scenes = _scenes(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    summary = t2i_pretrain.pretrain_t2i(scenes, a / "t2i", a / "m.json", a / "grid.png", SimpleNamespace(**_TINY))
    assert summary["unet_steps"] == 4 and summary["unet_restarts"] == [2]
    assert (a / "grid.png").is_file() and not (a / "t2i.partial").exists()

    save = t2i_pretrain._save_ckpt

    def killed_after_unet_step_2(path, state):  # a kill right after the UNet checkpoint of step 2, before the restart
        save(path, state)
        if "unet" in state and state["step"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(t2i_pretrain, "_save_ckpt", killed_after_unet_step_2)
    with pytest.raises(KeyboardInterrupt):
        t2i_pretrain.pretrain_t2i(scenes, b / "t2i", b / "m.json", b / "grid.png", SimpleNamespace(**_TINY))
    assert (b / "t2i.partial" / "unet.pt").is_file() and not (b / "t2i").exists()
    monkeypatch.setattr(t2i_pretrain, "_save_ckpt", save)
    resumed = t2i_pretrain.pretrain_t2i(scenes, b / "t2i", b / "m.json", b / "grid.png", SimpleNamespace(**_TINY))
    assert [c.get("eps_mse") for c in resumed["curve"]] == [c.get("eps_mse") for c in summary["curve"]]
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        wa, wb = load_file(str(a / "t2i" / part)), load_file(str(b / "t2i" / part))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), part
