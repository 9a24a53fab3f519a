"""The papers' controls and ablations as named runs (``<control>_s<seed>``, :func:`mlr_core.runs.parse_seeded_run`):
each is a set of overrides of its method's params section, applied on top of params.yaml for that run only.
Dependency-free, so that params validation can check run names without importing the methods.
"""
from __future__ import annotations

#: T2I-PAL, the paper's Tables 5-6: Text-only / Syn.Img-only training, without the adapter, adapter on the
#: global features; and mAP against the number of synthetic images (a seeded half / quarter of them; more
#: images is an experiment on synthesis.images_per_caption).
T2I_PAL_CONTROLS: dict[str, dict] = {
    "text_only": {"train_on": "captions"},
    "images_only": {"train_on": "images"},
    "no_adapter": {"adapter": "none"},
    "global_adapter": {"adapter": "global"},
    "images50": {"image_fraction": 0.5},
    "images25": {"image_fraction": 0.25},
}

#: Data-free (Yang et al., Table 4): the prompt layouts, the hierarchical one without the order loss, the
#: hierarchy's source (the LLM's subgroups as they are; clusters of the class-name text embeddings), and mAP
#: against the amount of LLM text (a seeded half / quarter of the training sentences; more text is an
#: experiment on llm.counts).
DATAFREE_CONTROLS: dict[str, dict] = {
    "shared": {"layout": "shared"},
    "class_specific": {"layout": "class_specific"},
    "no_order": {"order_weight": 0.0},
    "llm_hierarchy": {"hierarchy": "llm"},
    "embedding_hierarchy": {"hierarchy": "embedding"},
    "sentences50": {"sentence_fraction": 0.5},
    "sentences25": {"sentence_fraction": 0.25},
}


class WithControl:
    """Attribute access to a params section (or a stage's view of it) with a control's overrides on top; keys a
    run does not read stay unread (a stage's params view checks what it reads)."""

    def __init__(self, section, control: str | None, controls: dict[str, dict]):
        self._section, self._overrides = section, dict(controls[control]) if control else {}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._overrides[name] if name in self._overrides else getattr(self._section, name)
