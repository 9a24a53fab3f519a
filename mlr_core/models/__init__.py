"""CLIP provisioning and feature extraction. Importing this package registers the project's own
open_clip model configs (``configs/*.json``, e.g. ``tinyworld-RN``) with open_clip.

open_clip's package import pulls in ``transformers`` (about 1.5 s of every stage's start on 2 cores) only for
Hugging Face text towers and CoCa's caption generation, which no project config and none of RN50 / RN101 /
ViT-B-32 use. So, unless something imported ``transformers`` already, open_clip is imported with it hidden,
and :func:`require_hf_support` loads it for an architecture that needs it (an ``hf_model_name`` text tower).
Likewise torchvision (which open_clip imports) takes one helper from ``torch._dynamo.utils`` at import time,
and importing ``torch._dynamo`` costs another 1.2 s; it gets a stand-in that imports the real module the first
time an roi op calls it (no project model does; ``torch.compile`` and everything else import the real one).
"""
import importlib
import sys
import types
from pathlib import Path


def _lazy_dynamo_utils() -> types.ModuleType:
    """A stand-in for ``torch._dynamo.utils`` whose one name torchvision takes at import time
    (``is_compile_supported``, called only when an roi op runs) imports the real module on first call."""
    stand_in = types.ModuleType("torch._dynamo.utils")

    def is_compile_supported(*args, **kwargs):
        from torch._dynamo.utils import is_compile_supported as real  # the stand-in is gone by then

        return real(*args, **kwargs)

    stand_in.is_compile_supported = is_compile_supported
    return stand_in


if "open_clip" not in sys.modules:
    hidden = {}
    if "transformers" not in sys.modules:
        hidden["transformers"] = None  # `import transformers` raises ImportError: open_clip's optional path
    if "torch._dynamo" not in sys.modules:
        hidden["torch._dynamo.utils"] = _lazy_dynamo_utils()
    sys.modules.update(hidden)
    try:
        import open_clip
    finally:
        for name in hidden:
            del sys.modules[name]
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
