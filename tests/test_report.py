"""The report: aggregation over seeds (against numpy), entry order, Markdown rows, the PNG figures (exist, open,
fixed size, no metadata), byte-identical rebuilds, clear errors, and the CLI as a subprocess."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlr_core.report import DPI, FIGURE_SIZES, build_report

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [f"class{k:02d}" for k in range(20)]
METRICS = ("mAP", "F1@3", "P@3", "R@3", "CF1", "OF1", "F1@5", "P@5", "R@5")

# result files (path under metrics/ without .json); the expected (method, group) order and (n, seeds)
RUNS = [
    "zsclip", "tai_dpt", "datafree_s0", "datafree_s1",  # flat layout (a seeded flat stem is group default)
    "t2i_pal/s0", "t2i_pal/s1", "t2i_pal/s2", "t2i_pal/text_only_s0", "t2i_pal/text_only_s1",
    "coop_dpt/shot1_s0", "coop_dpt/shot2_s0", "coop_dpt/shot16_s0", "coop_dpt/shot16_s1",
    "dualcoop/partial10_s0", "dualcoop/partial10_s1", "dualcoop/partial10_s2", "dualcoop/partial20_s0",
    "dualcoop/partial90_s0", "dualcoop/zsl-tiny_15_5_s0",
    "pvlr/full_s0", "pvlr/full_s1",
    "ensemble/tai_dpt+dualcoop_partial10_s0", "ensemble/tai_dpt+dualcoop_partial10_s1",
    "ensemble/tai_dpt+dualcoop_partial20_s0", "ensemble/tai_dpt+coop_dpt_shot1_s0",
    "ensemble/tai_dpt+coop_dpt_shot16_s0",
    "newmethod/run_s0", "alpha/s3",
]
EXPECTED = [  # (method, group, seeds, headline)
    ("zsclip", "default", [None], True),
    ("tai_dpt", "default", [None], True),
    ("datafree", "default", [0, 1], True),
    ("t2i_pal", "default", [0, 1, 2], True),
    ("t2i_pal", "text_only", [0, 1], False),
    ("coop_dpt", "shot1", [0], False),
    ("coop_dpt", "shot2", [0], False),
    ("coop_dpt", "shot16", [0, 1], True),
    ("dualcoop", "partial10", [0, 1, 2], True),
    ("dualcoop", "partial20", [0], False),
    ("dualcoop", "partial90", [0], False),
    ("dualcoop", "zsl-tiny_15_5", [0], False),
    ("pvlr", "full", [0, 1], True),
    ("ensemble", "tai_dpt+coop_dpt_shot1", [0], False),
    ("ensemble", "tai_dpt+coop_dpt_shot16", [0], True),
    ("ensemble", "tai_dpt+dualcoop_partial10", [0, 1], True),
    ("ensemble", "tai_dpt+dualcoop_partial20", [0], False),
    ("alpha", "default", [3], True),
    ("newmethod", "run", [0], True),
]


def write_tree(root: Path) -> dict[str, dict]:
    """metrics/ and plots/ for RUNS (random percent metrics), plus non-result JSONs; -> run key -> its metrics."""
    rng = np.random.default_rng(0)
    docs = {}
    for key in RUNS:
        doc = {name: round(float(rng.uniform(40, 95)), 3) for name in METRICS}
        doc["method"], doc["threshold"], doc["dataset"] = key.split("/")[0], 0.5, {"name": "tiny"}
        if "zsl-" in key:
            doc["ZSL"] = {"mAP": 80.586, "F1@3": 56.586, "n_classes": 5}
            doc["GZSL"] = {"mAP": 78.684, "F1@3": 66.247, "n_classes": 20}
        if key.startswith("ensemble/"):
            doc.update(base="tai_dpt", other=key.split("+")[1], weight=0.5)
        docs[key] = doc
        (root / "metrics" / f"{key}.json").parent.mkdir(parents=True, exist_ok=True)
        (root / "metrics" / f"{key}.json").write_text(json.dumps(doc, indent=2))
        ap = [{"class": c, "AP": round(float(rng.uniform(20, 100)), 3)} for c in CLASSES]
        recall = np.linspace(0.0, 1.0, 30)
        pr = [{"recall": float(r), "precision": float(1 - 0.6 * r ** 2), "threshold": float(1 - r)} for r in recall]
        for kind, records in (("ap_per_class", ap), ("pr_curve", pr)):
            (root / "plots" / kind / f"{key}.json").parent.mkdir(parents=True, exist_ok=True)
            (root / "plots" / kind / f"{key}.json").write_text(json.dumps(records))
    # not results: no top-level mAP number
    (root / "metrics/captions.json").write_text(json.dumps({"kept": 3, "per_class": {"a": 1}}))
    (root / "metrics/pretrain_clip.json").write_text(json.dumps({"final_zero_shot_mAP_heldout": 65.4}))
    (root / "metrics/synthesis.json").write_text(json.dumps({"mAP": "n/a", "images": 3}))
    (root / "metrics/dualcoop/notes.json").write_text(json.dumps(["a", "list"]))
    return docs


def build(root: Path, out: Path) -> dict:
    return build_report(root / "metrics", root / "plots", out / "report.json", out / "report.md", out / "figures")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    docs = write_tree(root)
    report = build(root, root / "out1")
    return root, docs, report


def test_entries_order_n_seeds_and_headlines(tree):
    _, _, report = tree
    got = [(e["method"], e["group"], e["seeds"], e["headline"]) for e in report["entries"]]
    assert got == EXPECTED
    assert all(e["n"] == len(e["seeds"]) == len(e["runs"]) for e in report["entries"])
    assert report["entries"][3]["runs"] == ["t2i_pal/s0", "t2i_pal/s1", "t2i_pal/s2"]
    assert report["entries"][2]["runs"] == ["datafree_s0", "datafree_s1"]


def test_mean_and_sample_std_match_numpy(tree):
    _, docs, report = tree
    for entry in report["entries"]:
        values = {m: [docs[key][m] for key in entry["runs"]] for m in METRICS}
        assert list(entry["metrics"])[:len(METRICS)] == list(METRICS)
        for m in METRICS:
            got = entry["metrics"][m]
            assert abs(got["mean"] - np.mean(values[m])) <= 0.005 + 1e-9
            assert got["mean"] == round(got["mean"], 2)
            if entry["n"] == 1:
                assert got["std"] is None
            else:
                assert abs(got["std"] - np.std(values[m], ddof=1)) <= 0.005 + 1e-9
                assert got["std"] == round(got["std"], 2)


def test_zsl_metrics_only_where_present(tree):
    _, _, report = tree
    zsl = next(e for e in report["entries"] if e["group"] == "zsl-tiny_15_5")
    assert zsl["metrics"]["ZSL/mAP"] == {"mean": 80.59, "std": None}
    assert zsl["metrics"]["GZSL/F1@3"] == {"mean": 66.25, "std": None}
    assert all("ZSL/mAP" not in e["metrics"] for e in report["entries"] if e is not zsl)


def test_json_file_and_markdown_rows(tree):
    root, _, report = tree
    assert json.loads((root / "out1/report.json").read_text()) == report
    md = (root / "out1/report.md").read_text()
    lines = md.splitlines()
    assert "sample standard deviation" in lines[0] and lines[1] == ""
    assert lines[2] == "| method | group | n | mAP | F1@3 | CF1 | OF1 |"
    rows = lines[4:]
    assert len(rows) == len(EXPECTED)

    def cell(entry, m):
        v = entry["metrics"][m]
        return f"{v['mean']:.2f}" if v["std"] is None else f"{v['mean']:.2f} ± {v['std']:.2f}"

    for entry, row in zip(report["entries"], rows):
        cells = [entry["method"], entry["group"], str(entry["n"])]
        cells += [cell(entry, m) for m in ("mAP", "F1@3", "CF1", "OF1")]
        assert row == "| " + " | ".join(cells) + " |"
    assert "| dualcoop | partial10 | 3 | " in md and " ± " in rows[8]
    assert "| zsclip | default | 1 | " in md and "±" not in rows[0]


def test_every_figure_written_with_its_size_and_no_metadata(tree):
    root, _, report = tree
    assert report["figures"] == {"written": sorted(FIGURE_SIZES), "skipped": {}}
    for name, (width, height) in FIGURE_SIZES.items():
        path = root / "out1/figures" / name
        with Image.open(path) as image:
            image.load()
            assert image.format == "PNG" and image.size == (round(width * DPI), round(height * DPI))
            assert set(image.info) <= {"dpi"}  # no Software / version / date text chunk
        data = path.read_bytes()
        assert b"tEXt" not in data and b"iTXt" not in data and b"zTXt" not in data and b"tIME" not in data


def test_second_build_is_byte_identical(tree):
    root, _, _ = tree
    build(root, root / "out2")
    first = sorted(p.relative_to(root / "out1") for p in (root / "out1").rglob("*") if p.is_file())
    second = sorted(p.relative_to(root / "out2") for p in (root / "out2").rglob("*") if p.is_file())
    assert first == second and len(first) == 2 + len(FIGURE_SIZES)
    for rel in first:
        assert (root / "out1" / rel).read_bytes() == (root / "out2" / rel).read_bytes(), rel


def test_own_output_in_metrics_dir_is_ignored_and_missing_plots_skip_figures(tmp_path):
    (tmp_path / "metrics/dualcoop").mkdir(parents=True)
    for seed, ap in enumerate([70.0, 74.0]):
        (tmp_path / f"metrics/dualcoop/partial10_s{seed}.json").write_text(json.dumps({"mAP": ap, "F1@3": 60.0}))
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "pr_curves.png").write_bytes(b"stale")  # from an earlier build that had plots
    args = (tmp_path / "metrics", tmp_path / "no-plots", tmp_path / "metrics/report.json", tmp_path / "r.md", figures)
    first = build_report(*args)
    assert build_report(*args) == first  # the report's own JSON in metrics/ is no result
    assert [(e["method"], e["group"], e["n"]) for e in first["entries"]] == [("dualcoop", "partial10", 2)]
    assert first["entries"][0]["metrics"] == {"mAP": {"mean": 72.0, "std": 2.83}, "F1@3": {"mean": 60.0, "std": 0.0}}
    assert first["figures"]["written"] == ["map_by_method.png", "partial_labels.png"]
    assert set(first["figures"]["skipped"]) == {"ap_heatmap.png", "controls.png", "few_shot.png", "pr_curves.png"}
    assert sorted(p.name for p in figures.iterdir()) == ["map_by_method.png", "partial_labels.png"]


def test_missing_or_empty_metrics_dir(tmp_path):
    out = (tmp_path / "r.json", tmp_path / "r.md", tmp_path / "figures")
    with pytest.raises(ValueError, match=r"no-such-dir: metrics directory not found"):
        build_report(tmp_path / "no-such-dir", tmp_path / "plots", *out)
    (tmp_path / "metrics").mkdir()
    with pytest.raises(ValueError, match=r"metrics: no results found \(expected .*mAP"):
        build_report(tmp_path / "metrics", tmp_path / "plots", *out)
    (tmp_path / "metrics/captions.json").write_text('{"kept": 1}')
    with pytest.raises(ValueError, match=r"metrics: no results found"):
        build_report(tmp_path / "metrics", tmp_path / "plots", *out)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("bad", ["metrics/dualcoop/partial10_s1.json", "metrics/zsclip.json",
                                 "plots/pr_curve/dualcoop/partial10_s0.json"])
def test_malformed_json_names_the_file(tmp_path, bad):
    (tmp_path / "metrics/dualcoop").mkdir(parents=True)
    (tmp_path / "metrics/dualcoop/partial10_s0.json").write_text(json.dumps({"mAP": 70.0}))
    (tmp_path / bad).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / bad).write_text('{"mAP": 71.0,')
    with pytest.raises(ValueError, match=rf"{Path(bad).name}: malformed JSON"):
        build_report(tmp_path / "metrics", tmp_path / "plots", tmp_path / "r.json", tmp_path / "r.md",
                     tmp_path / "figures")


def test_duplicate_seed_from_two_layouts_is_an_error(tmp_path):
    (tmp_path / "metrics/t2i_pal").mkdir(parents=True)
    (tmp_path / "metrics/t2i_pal_s0.json").write_text(json.dumps({"mAP": 90.0}))
    (tmp_path / "metrics/t2i_pal/s0.json").write_text(json.dumps({"mAP": 91.0}))
    with pytest.raises(ValueError, match=r"t2i_pal / default: two results for seed 0"):
        build_report(tmp_path / "metrics", tmp_path / "plots", tmp_path / "r.json", tmp_path / "r.md",
                     tmp_path / "figures")


def test_cli(tree, tmp_path):
    root, _, report = tree
    out = tmp_path / "cli"
    cmd = [sys.executable, str(ROOT / "pipeline/report.py"), "--metrics-dir", str(root / "metrics"),
           "--plots-dir", str(root / "plots"), "--out-json", str(out / "report.json"), "--out-md",
           str(out / "report.md"), "--figures-dir", str(out / "figures"),
           "--stage", "report", "--params", str(ROOT / "params.yaml")]
    env = {**os.environ, "DVC_ROOT": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "report.md").read_bytes() == (root / "out1/report.md").read_bytes()
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(FIGURE_SIZES)

    cmd[3] = str(tmp_path / "missing")
    failed = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert failed.returncode != 0
    assert failed.stderr.startswith("error: ") and "missing" in failed.stderr
    assert "Traceback" not in failed.stderr
