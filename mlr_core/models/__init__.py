"""CLIP provisioning and feature extraction. Importing this package registers the project's own
open_clip model configs (``configs/*.json``, e.g. ``tinyworld-RN``) with open_clip."""
from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).parent / "configs"
if CONFIG_DIR not in open_clip.factory._MODEL_CONFIG_PATHS:
    open_clip.add_model_config(CONFIG_DIR)
