r"""The report: every method's results aggregated over its seeds (one JSON, one Markdown table) and the
offline PNG figures drawn from them.

Inputs (a metrics tree and a plots tree, as the evaluation stages write them)
-----------------------------------------------------------------------------
* ``<metrics>/<name>.json``: an untrained method (``zsclip``), group ``default``, no seed; a stem that ends
  in ``_s<seed>`` (the older flat layout, ``t2i_pal_s0``) is method ``<stem before _s>``, group ``default``.
* ``<metrics>/<method>/<run>.json``: one run of a trained method. The run name is ``<group>_s<seed>`` or just
  ``s<seed>`` (group ``default``); ``partial10_s0`` is group ``partial10``, seed 0; an ensemble's
  ``tai_dpt+dualcoop_partial10_s0`` is group ``tai_dpt+dualcoop_partial10``. A run name without a seed is a
  group of its own with no seed.
* A JSON without a top-level ``"mAP"`` number is not a result and is ignored (caption, LLM, synthesis and
  pretraining summaries), and so is the report's own JSON. Deeper folders are not read.
* ``<plots>/ap_per_class/<run key>.json`` (records ``class``, ``AP``) and ``<plots>/pr_curve/<run key>.json``
  (records ``recall``, ``precision``), where the run key is the result's path under ``<metrics>`` without
  ``.json`` (``dualcoop/partial10_s0``, ``zsclip``). A missing plot file only leaves out what it would draw.

Aggregation
-----------
For each (method, group) with runs :math:`r = 1..n` and a metric value :math:`x_r` (percent), the report
gives the mean and the *sample* standard deviation over seeds,

.. math::
    \bar x = \frac{1}{n} \sum_r x_r, \qquad s = \sqrt{\frac{1}{n - 1} \sum_r (x_r - \bar x)^2}
    \quad (n \ge 2;\ s = \text{null when } n = 1),

summed with ``math.fsum`` (exact, so the same on every machine) and rounded to 2 decimals. The metrics are
:data:`METRIC_KEYS` (each where every run of the group has it) and, for zero-shot (ZSL) runs, the nested
``ZSL`` / ``GZSL`` ``mAP`` and ``F1@3`` (:data:`NESTED_METRIC_KEYS`, reported as ``"ZSL/mAP"``...). Two
results for the same (method, group, seed), or a group that mixes seeded and unseeded runs (old and new
layout side by side), are errors rather than silently averaged.

Order: methods in :data:`METHOD_ORDER`, then any other alphabetically; groups naturally sorted
(``partial10 < partial20 < ... < partial90``, ``shot1 < shot2 < shot16``) with ``default`` first; runs by
seed. The *headline* group of a method is its only group, else the first of its groups that matches
:data:`HEADLINE_GROUPS` (``fnmatch`` patterns, in that order; all that match for the ensemble's two), else
its first group.

Figures (:data:`FIGURE_SIZES`, written only when their inputs exist; the JSON lists what was written)
----------------------------------------------------------------------------------------------------
``map_by_method.png`` (headline mAP, bars with ±s), ``controls.png`` (every group of
:data:`CONTROL_METHODS` that has more than one), ``partial_labels.png`` (mAP vs known-label proportion for
``partial<p>`` groups and ``<base>+<other>_partial<p>`` ensembles), ``few_shot.png`` (mAP vs shots, log2
axis, ``shot<k>`` and ``<base>+<other>_shot<k>``), ``pr_curves.png`` (micro PR curve of each headline group's
first seed), ``ap_heatmap.png`` (per-class AP of each headline group, averaged over its seeds).

Byte-identical output for the same inputs: fixed figure sizes and dpi, matplotlib's defaults plus
:data:`FIGURE_RC` (its bundled DejaVu Sans, no locale formatting), no PNG metadata but the resolution, and
every iteration sorted. The figures are built as ``Figure`` objects on the Agg canvas: no pyplot, so no GUI
backend is ever chosen and nothing global is left open (matplotlib is imported only when drawing). PNG
bytes can change with another matplotlib or Pillow version (renderer, zlib), not with the machine.

Example:
    >>> split_run("partial10_s2"), split_run("s1"), split_run("tai_dpt+dualcoop_partial10_s0")
    (('partial10', 2), ('default', 1), ('tai_dpt+dualcoop_partial10', 0))
    >>> mean_std([80.0, 82.0, 84.5]), mean_std([64.938])
    ((82.17, 2.25), (64.94, None))
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "metrics/dualcoop").mkdir(parents=True)
    >>> for seed, ap in enumerate([80.0, 82.0]):
    ...     _ = (root / f"metrics/dualcoop/partial10_s{seed}.json").write_text(json.dumps({"mAP": ap}))
    >>> _ = (root / "metrics/captions.json").write_text('{"kept": 3}')  # not a result: ignored
    >>> report = build_report(root / "metrics", root / "plots", root / "report.json", root / "report.md",
    ...                       root / "figures")
    >>> entry = report["entries"][0]
    >>> entry["method"], entry["group"], entry["n"], entry["seeds"], entry["metrics"]["mAP"]
    ('dualcoop', 'partial10', 2, [0, 1], {'mean': 81.0, 'std': 1.41})
    >>> report["figures"]["written"]
    ['map_by_method.png', 'partial_labels.png']
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from mlr_core.io import atomic_path, atomic_write_json, atomic_write_text

# The table's and the figures' method order: zero-shot, text-trained, image-trained, ensembles; any method
# not listed follows, alphabetically.
METHOD_ORDER = ("zsclip", "zsclip_dpt", "tai", "tai_dpt", "datafree", "t2i_pal", "coop", "coop_dpt", "dualcoop",
                "pvlr", "ensemble")
DEFAULT_GROUP = "default"
# The group that stands for a method in the headline figures when it has several (fnmatch patterns, first
# match wins; the ensemble has two headlines, its partial-label one and its few-shot one).
HEADLINE_GROUPS = {
    "dualcoop": ("partial10",),
    "coop": ("shot16",),
    "coop_dpt": ("shot16",),
    "pvlr": ("full",),
    "tai": (DEFAULT_GROUP,),
    "tai_dpt": (DEFAULT_GROUP,),
    "datafree": (DEFAULT_GROUP,),
    "t2i_pal": (DEFAULT_GROUP,),
    "ensemble": ("*_partial10", "*_shot16"),
    "class_concepts": ("zsclip",),   # the refiners: on zero-shot CLIP, the papers' headline setting
    "sparc": ("zsclip",),
}
# Methods whose extra groups are controls / ablations, all drawn in controls.png.
CONTROL_METHODS = ("t2i_pal", "datafree")
# Reference lines (the method's default group) in the budget figures.
PARTIAL_REFERENCES = ("zsclip", "tai_dpt")
FEW_SHOT_REFERENCES = ("tai_dpt",)

METRIC_KEYS = ("mAP", "F1@3", "P@3", "R@3", "CF1", "OF1", "F1@5", "P@5", "R@5")
NESTED_METRIC_KEYS = (("ZSL", "mAP"), ("ZSL", "F1@3"), ("GZSL", "mAP"), ("GZSL", "F1@3"))
ALL_METRIC_KEYS = METRIC_KEYS + tuple(f"{outer}/{inner}" for outer, inner in NESTED_METRIC_KEYS)
TABLE_METRICS = ("mAP", "F1@3", "CF1", "OF1")
STD_NOTE = "std is the sample standard deviation over seeds (ddof = 1), null / not shown when n = 1"

DPI = 100
# (width, height) in inches; the PNGs are width * DPI x height * DPI pixels whatever they show.
FIGURE_SIZES = {
    "map_by_method.png": (11.0, 5.5),
    "controls.png": (8.0, 4.5),
    "partial_labels.png": (9.0, 5.0),
    "few_shot.png": (9.0, 5.0),
    "pr_curves.png": (10.0, 6.0),
    "ap_heatmap.png": (14.0, 7.0),
}
FIGURE_RC = {
    "font.family": "DejaVu Sans",  # shipped inside matplotlib, found before any system font: same glyphs
    "font.size": 9.0,
    "axes.formatter.use_locale": False,  # never a locale's decimal comma
    "axes.unicode_minus": True,
    "text.usetex": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": None,  # a "tight" box would make the pixel size depend on the labels
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "timezone": "UTC",  # no date axis is drawn; fixed anyway so that none could depend on the machine
    "path.simplify": True,
    "agg.path.chunksize": 0,
}
MAX_ANNOTATED_CLASSES = 20
MAX_ANNOTATED_ROWS = 20

_SEEDED_RUN = re.compile(r"^(?:(?P<group>.*)_)?s(?P<seed>\d+)$")
_FLAT_SEEDED = re.compile(r"^(.+)_s(\d+)$")


@dataclass
class RunResult:
    """One result file: ``key`` is its path under the metrics dir without ``.json`` (also its plots' path)."""
    method: str
    group: str
    seed: int | None
    key: str
    values: dict[str, float]


@dataclass
class Entry:
    """One (method, group): its runs sorted by seed and the aggregated metrics (rounded)."""
    method: str
    group: str
    runs: list[RunResult]
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    headline: bool = False

    @property
    def label(self) -> str:
        return self.method if self.group == DEFAULT_GROUP else f"{self.method} / {self.group}"

    def mean_std(self, key: str = "mAP") -> tuple[float, float | None]:
        value = self.metrics[key]
        return value["mean"], value["std"]

    def to_json(self) -> dict:
        return {"method": self.method, "group": self.group, "n": len(self.runs),
                "seeds": [r.seed for r in self.runs], "runs": [r.key for r in self.runs],
                "headline": self.headline, "metrics": self.metrics}


def split_run(name: str) -> tuple[str, int | None]:
    """``<group>_s<seed>`` or ``s<seed>`` -> ``(group, seed)`` (group ``default`` when empty); a name without
    a seed suffix is its own group, seed ``None``."""
    m = _SEEDED_RUN.match(name)
    if not m:
        return name, None
    return m["group"] or DEFAULT_GROUP, int(m["seed"])


def natural_key(text: str) -> tuple:
    """Sort key that orders the digit runs of ``text`` as numbers (``shot2 < shot16``). ``re.split`` with a
    capture group alternates text and digits, so equal positions always compare like with like."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), text


def method_key(method: str) -> tuple:
    """:data:`METHOD_ORDER` first, then any other method alphabetically."""
    if method in METHOD_ORDER:
        return 0, METHOD_ORDER.index(method), ""
    return 1, 0, method


def group_key(group: str) -> tuple:
    return group != DEFAULT_GROUP, natural_key(group)


def mean_std(values: list[float], ndigits: int = 2) -> tuple[float, float | None]:
    r"""Mean and sample standard deviation (:math:`\frac{1}{n-1}`, ``None`` when n = 1), both rounded."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else None
    return round(mean, ndigits) + 0.0, (None if std is None else round(std, ndigits) + 0.0)  # + 0.0: no -0.0


def read_json(path: Path):
    """The decoded JSON of ``path``; a ``ValueError`` naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed JSON ({e})") from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_values(doc: dict, path: Path) -> dict[str, float]:
    """The metrics of :data:`ALL_METRIC_KEYS` that ``doc`` has, as floats (finite: a NaN mean is no number)."""
    found = {key: doc[key] for key in METRIC_KEYS if key in doc}
    for outer, inner in NESTED_METRIC_KEYS:
        if isinstance(doc.get(outer), dict) and inner in doc[outer]:
            found[f"{outer}/{inner}"] = doc[outer][inner]
    for key, value in found.items():
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{path}: metric {key} is {value!r}, expected a finite number (percent)")
    return {key: float(value) for key, value in found.items()}


def _result_or_none(path: Path, method: str, group: str, seed: int | None, key: str) -> RunResult | None:
    doc = read_json(path)
    if not isinstance(doc, dict) or not _is_number(doc.get("mAP")):
        return None  # a stage summary, not a method's result
    return RunResult(method, group, seed, key, _metric_values(doc, path))


def collect_results(metrics_dir: str | Path, exclude: tuple[str | Path, ...] = ()) -> list[RunResult]:
    """Every result under ``metrics_dir`` (layout in the module docstring), in file-name order; the files in
    ``exclude`` (the report's own output) are skipped."""
    metrics_dir = Path(metrics_dir)
    expected = "result JSONs (a top-level 'mAP' number) as <name>.json or <method>/<run>.json"
    if not metrics_dir.is_dir():
        raise ValueError(f"{metrics_dir}: metrics directory not found (expected a directory of {expected})")
    skip = {Path(p).resolve() for p in exclude}
    results = []
    for path in sorted(metrics_dir.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix == ".json" and path.resolve() not in skip:
            # flat layout: <method>.json (no seed) or <method>_s<seed>.json, both group default
            flat = _FLAT_SEEDED.match(path.stem)
            method, seed = (flat[1], int(flat[2])) if flat else (path.stem, None)
            result = _result_or_none(path, method, DEFAULT_GROUP, seed, path.stem)
            if result is not None:
                results.append(result)
        elif path.is_dir():
            for run_path in sorted(path.glob("*.json")):
                if run_path.name.startswith(".") or not run_path.is_file() or run_path.resolve() in skip:
                    continue
                group, seed = split_run(run_path.stem)
                result = _result_or_none(run_path, path.name, group, seed, f"{path.name}/{run_path.stem}")
                if result is not None:
                    results.append(result)
    if not results:
        raise ValueError(f"{metrics_dir}: no results found (expected {expected})")
    return results


def aggregate(results: list[RunResult]) -> list[Entry]:
    """Group the runs by (method, group), sort (module docstring), aggregate each metric every run has, and
    mark the headline groups."""
    grouped: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        grouped.setdefault((r.method, r.group), []).append(r)
    entries = []
    for (method, group), runs in sorted(grouped.items(), key=lambda kv: (method_key(kv[0][0]), group_key(kv[0][1]))):
        seeds = [r.seed for r in runs]
        if len(runs) > 1 and None in seeds:
            raise ValueError(f"{method} / {group}: mixes runs with and without a seed "
                             f"({', '.join(sorted(r.key for r in runs))}); remove the stale layout's files")
        runs = sorted(runs, key=lambda r: (r.seed if r.seed is not None else -1, r.key))
        for a, b in zip(runs, runs[1:]):
            if a.seed == b.seed:
                raise ValueError(f"{method} / {group}: two results for seed {a.seed} ({a.key}.json, {b.key}.json); "
                                 f"remove the stale one")
        entry = Entry(method, group, runs)
        for key in ALL_METRIC_KEYS:
            if all(key in r.values for r in runs):
                mean, std = mean_std([r.values[key] for r in runs])
                entry.metrics[key] = {"mean": mean, "std": std}
        entries.append(entry)
    for method in sorted({e.method for e in entries}):
        for entry in headline_entries_of([e for e in entries if e.method == method]):
            entry.headline = True
    return entries


def headline_entries_of(method_entries: list[Entry]) -> list[Entry]:
    """The headline group(s) of one method's (sorted) entries: the only one, else the first entry matching
    each pattern of :data:`HEADLINE_GROUPS`, else the first."""
    if len(method_entries) <= 1:
        return method_entries
    chosen = []
    for pattern in HEADLINE_GROUPS.get(method_entries[0].method, ()):
        match = next((e for e in method_entries if fnmatchcase(e.group, pattern)), None)
        if match is not None and match not in chosen:
            chosen.append(match)
    return chosen or method_entries[:1]


def _format_cell(entry: Entry, key: str) -> str:
    if key not in entry.metrics:
        return "–"
    mean, std = entry.mean_std(key)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def render_markdown(entries: list[Entry]) -> str:
    """The table: method | group | n | mAP | F1@3 | CF1 | OF1, ``mean ± std`` when n > 1, with its caption."""
    lines = [f"Results in % over the seeds of each (method, group), mean ± std; {STD_NOTE}; n = number of seeds.",
             "",
             "| method | group | n | " + " | ".join(TABLE_METRICS) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in TABLE_METRICS) + " |"]
    for e in entries:
        cells = [e.method, e.group, str(len(e.runs))] + [_format_cell(e, key) for key in TABLE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- plot data

def _read_records(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """A plots file: a JSON list of records that each have ``fields`` (``ValueError`` naming the file)."""
    records = read_json(path)
    if not isinstance(records, list) or not all(isinstance(r, dict) and all(f in r for f in fields)
                                                for r in records):
        raise ValueError(f"{path}: expected a JSON list of records with fields {', '.join(fields)}")
    return records


def _pr_curve(plots_dir: Path, run: RunResult) -> tuple[list[float], list[float]] | None:
    path = plots_dir / "pr_curve" / f"{run.key}.json"
    if not path.is_file():
        return None
    records = _read_records(path, ("recall", "precision"))
    if not all(_is_number(r["recall"]) and _is_number(r["precision"]) for r in records):
        raise ValueError(f"{path}: recall and precision must be numbers")
    return [float(r["recall"]) for r in records], [float(r["precision"]) for r in records]


def _ap_per_class(plots_dir: Path, run: RunResult) -> dict[str, float] | None:
    path = plots_dir / "ap_per_class" / f"{run.key}.json"
    if not path.is_file():
        return None
    records = _read_records(path, ("class", "AP"))
    if not all(isinstance(r["class"], str) and _is_number(r["AP"]) for r in records):
        raise ValueError(f"{path}: class must be a string and AP a number")
    return {r["class"]: float(r["AP"]) for r in records}  # dicts keep the file's class order


def _budget_series(entries: list[Entry], kind: str) -> dict[str, list[tuple[int, float, float | None]]]:
    """``label -> [(budget value, mAP mean, std)]`` sorted by value, for every method's ``<kind><x>`` groups
    and every ensemble's ``<base>+<other>_<kind><x>`` groups (base: the text before the first ``+``)."""
    own, mixed = re.compile(rf"^{kind}(\d+)$"), re.compile(rf"^([^+]+)\+(.+)_{kind}(\d+)$")
    series: dict[str, list] = {}
    for e in entries:
        if e.method == "ensemble":
            m = mixed.match(e.group)
            label, value = (f"ensemble {m[1]}+{m[2]}", m[3]) if m else (None, None)
        else:
            m = own.match(e.group)
            label, value = (e.method, m[1]) if m else (None, None)
        if label is not None and "mAP" in e.metrics:
            series.setdefault(label, []).append((int(value), *e.mean_std()))
    return {label: sorted(points) for label, points in series.items()}


def _default_entry(entries: list[Entry], method: str) -> Entry | None:
    return next((e for e in entries if e.method == method and e.group == DEFAULT_GROUP), None)


# ----------------------------------------------------------------------------------------------- figures

def _new_figure(name: str):
    return new_figure(FIGURE_SIZES[name])


def new_figure(size: tuple[float, float]):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot; draw it inside :func:`figure_style`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_style():
    """matplotlib's defaults (not the user's matplotlibrc) plus :data:`FIGURE_RC`: the same pixels anywhere."""
    import contextlib

    import matplotlib
    import matplotlib.style

    stack = contextlib.ExitStack()
    stack.enter_context(matplotlib.style.context("default"))
    stack.enter_context(matplotlib.rc_context(FIGURE_RC))
    return stack


def save_png(fig, path: Path) -> None:
    # "Software" is the only text chunk matplotlib writes to a PNG (its version); no date is written.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    fig.clf()  # nothing global holds the figure (no pyplot): this frees its artists now


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _bars_with_spread(ax, rows: list[Entry], *, horizontal: bool, decimals: int, sep: str) -> list[int]:
    """One bar per entry at its mean, coloured by method, sample-std error bars where there is a spread to show
    (n > 1), and the value written past each bar; returns the bar positions."""
    pos = list(range(len(rows)))
    means = [e.mean_std()[0] for e in rows]
    stds = [e.mean_std()[1] or 0.0 for e in rows]
    methods = sorted({e.method for e in rows}, key=method_key)
    colors = dict(zip(methods, _colors(len(methods))))
    (ax.barh if horizontal else ax.bar)(pos, means, color=[colors[e.method] for e in rows])
    spread = [(p, mean, std) for p, e, mean, std in zip(pos, rows, means, stds) if e.mean_std()[1] is not None]
    if spread:
        at, value, err = [p[0] for p in spread], [p[1] for p in spread], [p[2] for p in spread]
        if horizontal:
            ax.errorbar(value, at, xerr=err, fmt="none", ecolor="black", capsize=4, elinewidth=1.0)
        else:
            ax.errorbar(at, value, yerr=err, fmt="none", ecolor="black", capsize=4, elinewidth=1.0)
    for p, e, mean, std in zip(pos, rows, means, stds):
        text = f"{mean:.{decimals}f}" if e.mean_std()[1] is None else f"{mean:.{decimals}f}{sep}{std:.{decimals}f}"
        if horizontal:
            ax.text(mean + std + 1.0, p, text, va="center", fontsize=8)
        else:
            ax.text(p, mean + std + 1.0, text, ha="center", va="bottom", fontsize=8)
    return pos


def _finish_bars(fig, ax, path: Path, *, value_axis: str, limit: float, title: str) -> None:
    """The mAP axis (0..limit), title and grid of a bar chart, then the PNG."""
    (ax.set_xlim if value_axis == "x" else ax.set_ylim)(0, limit)
    (ax.set_xlabel if value_axis == "x" else ax.set_ylabel)("mAP (%)")
    ax.set_title(title)
    ax.grid(axis=value_axis, alpha=0.3)
    ax.set_axisbelow(True)
    save_png(fig, path)


def _draw_map_by_method(entries: list[Entry], path: Path) -> bool:
    rows = [e for e in entries if e.headline and "mAP" in e.metrics]
    if not rows:
        return False
    fig = _new_figure(path.name)
    ax = fig.add_subplot()
    x = _bars_with_spread(ax, rows, horizontal=False, decimals=1, sep="±")
    ax.set_xticks(x, [e.method if e.group == DEFAULT_GROUP else f"{e.method}\n{e.group}" for e in rows],
                  rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    _finish_bars(fig, ax, path, value_axis="y", limit=105,
                 title="mAP per method (headline group; error bars: sample std over seeds)")
    return True


def _draw_controls(entries: list[Entry], path: Path) -> bool:
    rows = []
    for method in CONTROL_METHODS:  # every group of a control method, if it has more than its default one
        groups = [e for e in entries if e.method == method and "mAP" in e.metrics]
        if len(groups) > 1:
            rows += groups
    if not rows:
        return False
    fig = _new_figure(path.name)
    ax = fig.add_subplot()
    y = _bars_with_spread(ax, rows, horizontal=True, decimals=2, sep=" ± ")
    ax.set_yticks(y, [e.label for e in rows])
    ax.invert_yaxis()  # first entry on top, as in the table
    _finish_bars(fig, ax, path, value_axis="x", limit=115, title="Controls and ablations (mean ± sample std over seeds)")
    return True


def _draw_budget_curves(entries: list[Entry], kind: str, references: tuple[str, ...], path: Path,
                        xlabel: str, title: str, log2: bool) -> bool:
    series = _budget_series(entries, kind)
    if not series:
        return False
    fig = _new_figure(path.name)
    ax = fig.add_subplot()
    labels = list(series)  # entries are sorted, so the series come in method order
    for label, color in zip(labels, _colors(len(labels))):
        points = series[label]
        xs, means = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, means, marker="o", color=color, label=label)
        bars = [p for p in points if p[2] is not None]
        if bars:  # error bars only where there is a spread to show (n > 1)
            ax.errorbar([p[0] for p in bars], [p[1] for p in bars], yerr=[p[2] for p in bars], fmt="none",
                        ecolor=color, capsize=4, elinewidth=1.0)
    styles = ["--", ":", "-."]
    for i, method in enumerate(references):
        ref = _default_entry(entries, method)
        if ref is not None and "mAP" in ref.metrics:
            mean = ref.mean_std()[0]
            ax.axhline(mean, color="0.35", linestyle=styles[i % len(styles)], linewidth=1.2,
                       label=f"{method} ({mean:.1f})")
    ticks = sorted({p[0] for points in series.values() for p in points})
    if log2:
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    save_png(fig, path)
    return True


def _draw_pr_curves(entries: list[Entry], plots_dir: Path, path: Path) -> bool:
    curves = []
    for e in entries:
        if e.headline:
            curve = _pr_curve(plots_dir, e.runs[0])
            if curve is not None:
                seed = "" if e.runs[0].seed is None else f", seed {e.runs[0].seed}"
                curves.append((f"{e.label}{seed}", curve))
    if not curves:
        return False
    fig = _new_figure(path.name)
    ax = fig.add_subplot()
    styles = ["-", "--", "-.", ":"]
    for i, ((label, (recall, precision)), color) in enumerate(zip(curves, _colors(len(curves)))):
        ax.plot(recall, precision, color=color, linestyle=styles[(i // 10) % len(styles)], linewidth=1.3,
                label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (micro)")
    ax.set_ylabel("precision (micro)")
    ax.set_title("Micro-averaged precision-recall (headline group, first seed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    save_png(fig, path)
    return True


def _draw_ap_heatmap(entries: list[Entry], plots_dir: Path, path: Path) -> bool:
    import numpy as np

    rows, classes = [], {}
    for e in entries:
        if not e.headline:
            continue
        per_run = [ap for ap in (_ap_per_class(plots_dir, r) for r in e.runs) if ap is not None]
        if not per_run:
            continue
        row_classes = dict.fromkeys(c for ap in per_run for c in ap)  # first-seen order
        classes.update(row_classes)
        # mean over the seeds that have the class (all of them, unless their class lists differ)
        mean_ap = {c: math.fsum(ap[c] for ap in per_run if c in ap) / sum(c in ap for ap in per_run)
                   for c in row_classes}
        rows.append((e.label + (f" (n={len(per_run)})" if len(per_run) > 1 else ""), mean_ap))
    if not rows:
        return False
    names = list(classes)
    grid = np.array([[ap.get(c, np.nan) for c in names] for _, ap in rows], dtype=float)
    fig = _new_figure(path.name)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=100, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    if len(names) <= MAX_ANNOTATED_CLASSES and len(rows) <= MAX_ANNOTATED_ROWS:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not math.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="black" if grid[i, j] > 60 else "white")
    fig.colorbar(image, ax=ax, label="AP (%)", fraction=0.03, pad=0.01)
    ax.set_title("Per-class AP (headline group, mean over seeds)")
    save_png(fig, path)
    return True


def draw_figures(entries: list[Entry], plots_dir: str | Path, figures_dir: str | Path) -> dict:
    """Draw every figure whose inputs exist into ``figures_dir``; -> ``{"written": [...], "skipped": {...}}``.
    A figure skipped now is removed from ``figures_dir`` if an earlier build left it (it would be stale)."""
    plots_dir, figures_dir = Path(plots_dir), Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    drawers = {
        "map_by_method.png": lambda p: _draw_map_by_method(entries, p),
        "controls.png": lambda p: _draw_controls(entries, p),
        "partial_labels.png": lambda p: _draw_budget_curves(
            entries, "partial", PARTIAL_REFERENCES, p, "known labels (%)",
            "mAP vs proportion of known labels (partial labels)", log2=False),
        "few_shot.png": lambda p: _draw_budget_curves(
            entries, "shot", FEW_SHOT_REFERENCES, p, "shots per class (log2)", "mAP vs shots per class",
            log2=True),
        "pr_curves.png": lambda p: _draw_pr_curves(entries, plots_dir, p),
        "ap_heatmap.png": lambda p: _draw_ap_heatmap(entries, plots_dir, p),
    }
    reasons = {"map_by_method.png": "no headline group with an mAP",
               "controls.png": f"none of {', '.join(CONTROL_METHODS)} has more than one group",
               "partial_labels.png": "no partial<p> groups", "few_shot.png": "no shot<k> groups",
               "pr_curves.png": "no pr_curve/<run>.json in the plots dir for a headline run",
               "ap_heatmap.png": "no ap_per_class/<run>.json in the plots dir for a headline run"}
    written, skipped = [], {}
    with figure_style():  # for these figures only
        for name in sorted(drawers):
            if drawers[name](figures_dir / name):
                written.append(name)
            else:
                skipped[name] = reasons[name]
                (figures_dir / name).unlink(missing_ok=True)
    return {"written": written, "skipped": skipped}


def build_report(metrics_dir: str | Path, plots_dir: str | Path, out_json: str | Path, out_md: str | Path,
                 figures_dir: str | Path) -> dict:
    """Aggregate every result under ``metrics_dir`` (module docstring), write the JSON ``out_json`` and the
    Markdown table ``out_md`` (both atomic) and the figures into ``figures_dir``; -> the JSON's content.

    ``ValueError`` (naming the path) for a missing metrics dir, one without any result, a malformed JSON, a
    duplicate seed or a plots file that is not a list of records."""
    out_json = Path(out_json)
    entries = aggregate(collect_results(metrics_dir, exclude=(out_json,)))
    figures = draw_figures(entries, plots_dir, figures_dir)
    report = {
        "description": "every (method, group) of the metrics tree aggregated over its seeds (runs)",
        "std": STD_NOTE,
        "ndigits": 2,
        "method_order": list(METHOD_ORDER),
        "metric_keys": list(ALL_METRIC_KEYS),
        "entries": [e.to_json() for e in entries],
        "figures": figures,
    }
    atomic_write_json(out_json, report)
    atomic_write_text(out_md, render_markdown(entries))
    return report
