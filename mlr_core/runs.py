"""The run-name grammar, ``<budget>_s<seed>``: ``full_s<seed>``, ``partial<pct>_s<seed>``, ``shot<k>_s<seed>``,
``zsl-<split>_s<seed>`` (see :mod:`mlr_core.budgets` for what each budget is), each optionally after ``noaug-``
(the control trained without the augmented views of :mod:`mlr_core.views`) or ``ft-`` (PVLR with its image encoder
fine-tuned on the budget's images, the paper's setting, instead of frozen cached features). One home, used by the
params validation and by the budgets; dependency-free so that validating params costs nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


class BudgetError(ValueError):
    """A budget that cannot be drawn or found (unknown run name, missing file, class not in the dataset)."""


@dataclass(frozen=True)
class Run:
    name: str  # e.g. partial10_s0
    kind: str  # full | partial | shot | zsl
    value: float | int | str | None  # proportion, shots, split name
    seed: int
    views: bool = True  # trains on the augmented views too (when given); a "noaug-" run: the images alone
    finetune: bool = False  # an "ft-" run: the image encoder is trained too, on the images (no cached features)

    @property
    def budget(self) -> str:
        """The label file's stem (canonical form of the run name)."""
        if self.kind == "partial":
            return f"partial{round(self.value * 100)}_s{self.seed}"
        if self.kind == "shot":
            return f"shot{self.value}_s{self.seed}"
        if self.kind == "zsl":
            return f"zsl-{self.value}_s{self.seed}"
        return f"full_s{self.seed}"


_RUN = re.compile(r"^(noaug-|ft-)?(?:(full)|partial(\d{1,3})|shot(\d+)|zsl-([A-Za-z0-9_.-]+?))_s(\d+)$")


def parse_run(name: str) -> Run:
    """The run-name grammar, ``<budget>_s<seed>``: its one home (params validation uses it too).

    Example:
        >>> parse_run("partial10_s2")
        Run(name='partial10_s2', kind='partial', value=0.1, seed=2, views=True, finetune=False)
        >>> parse_run("zsl-coco_48_17_s0").value
        'coco_48_17'
        >>> parse_run("noaug-partial10_s0").budget  # the same budget, trained without the augmented views
        'partial10_s0'
        >>> parse_run("ft-full_s1").finetune  # the image encoder fine-tuned (PVLR); the views are cached features
        True
    """
    m = _RUN.match(name)
    if not m:
        raise BudgetError(f"run {name!r}: expected full_s<seed>, partial<pct>_s<seed>, shot<k>_s<seed> or "
                          f"zsl-<split>_s<seed>, optionally after noaug- (without the augmented views) or ft- "
                          f"(PVLR: the image encoder fine-tuned)")
    prefix, full, pct, shots, split, seed = m.groups()
    views, finetune = prefix is None, prefix == "ft-"
    if pct is not None:
        if not 0 < int(pct) <= 100:
            raise BudgetError(f"run {name!r}: percentage must be in 1..100")
        return Run(name, "partial", int(pct) / 100, int(seed), views, finetune)
    if shots is not None:
        return Run(name, "shot", int(shots), int(seed), views, finetune)
    if split is not None:
        return Run(name, "zsl", split, int(seed), views, finetune)
    return Run(name, "full", None, int(seed), views, finetune)


@dataclass(frozen=True)
class SeededRun:
    name: str  # e.g. s0, no_adapter_s2
    control: str | None  # None: the params section's own settings
    seed: int


_SEEDED_RUN = re.compile(r"^(?:([a-z][a-z0-9_]*?)_)?s(\d+)$")


def parse_seeded_run(name: str, controls=None) -> SeededRun:
    """The run names of the text-trained methods (TaI / TaI-DPT, data-free, T2I-PAL): ``s<seed>`` trains with
    the params section as it is, ``<control>_s<seed>`` with one of the method's named ablations
    (:mod:`mlr_core.methods.controls`) applied on top; ``controls``: the method's names (None: any name).

    Example:
        >>> parse_seeded_run("s2")
        SeededRun(name='s2', control=None, seed=2)
        >>> parse_seeded_run("no_adapter_s0", ("no_adapter", "text_only")).control
        'no_adapter'
    """
    m = _SEEDED_RUN.match(name)
    if not m:
        raise BudgetError(f"run {name!r}: expected s<seed> or <control>_s<seed>")
    control, seed = m.groups()
    if control is not None and controls is not None and control not in controls:
        known = ", ".join(controls) if controls else "none for this method"
        raise BudgetError(f"run {name!r}: unknown control {control!r} (known: {known})")
    return SeededRun(name, control, int(seed))
