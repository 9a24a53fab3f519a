"""CLIP provisioning and feature extraction. Importing this package registers the project's own
open_clip model configs (``configs/*.json``, e.g. ``tinyworld-RN``) with open_clip.

open_clip's package import pulls in ``transformers`` (about 1.5 s of every stage's start on 2 cores) only for
Hugging Face text towers and CoCa's caption generation, which no project config and none of RN50 / RN101 /
ViT-B-32 use. So, unless something imported ``transformers`` already, open_clip is imported with it hidden,
and :func:`require_hf_support` loads it for an architecture that needs it (an ``hf_model_name`` text tower).
"""
import importlib
import sys
from pathlib import Path

if "open_clip" not in sys.modules and "transformers" not in sys.modules:
    sys.modules["transformers"] = None  # `import transformers` raises ImportError: open_clip's optional path
    try:
        import open_clip
    finally:
        del sys.modules["transformers"]
import open_clip  # noqa: E402

CONFIG_DIR = Path(__file__).parent / "configs"
if CONFIG_DIR not in open_clip.factory._MODEL_CONFIG_PATHS:
    open_clip.add_model_config(CONFIG_DIR)


def require_hf_support(arch: str) -> None:
    """Load open_clip's Hugging Face text-tower support if ``arch`` has such a tower and it was skipped.

    Re-executing ``open_clip.hf_model`` in its own namespace binds ``transformers`` and its classes there,
    which is where the already-imported ``HFTextEncoder`` looks them up."""
    cfg = open_clip.get_model_config(arch) or {}
    if cfg.get("text_cfg", {}).get("hf_model_name") and open_clip.hf_model.transformers is None:
        importlib.reload(open_clip.hf_model)
