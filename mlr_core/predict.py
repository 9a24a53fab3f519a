"""Tag new images with a trained (or zero-shot) method: a classifier export (:mod:`mlr_core.classifier`) applied
to a folder, glob, manifest or list of image files.

    python -m mlr_core.predict data/classifiers/tai_dpt/s0.safetensors photos/ --out tags.csv
    mlr-predict data/classifiers/dualcoop/partial10_s0.safetensors "shots/*.jpg" --out tags.parquet --top-k 3

Inputs (any number, mixed): a folder (its image files, recursively, by extension: :data:`IMAGE_EXTENSIONS`),
a glob, a manifest of the generic dataset format (``.csv`` / ``.jsonl``: its ``image`` field), a list of files
(``.txt``, one per line, relative to the list's folder or absolute), or an image file. An image's id is its
path relative to the folder it was found in, else the path as given.

What it does: loads the backbone the classifier was trained with (its recorded arch and checkpoint, or
``--pretrained``) and refuses one whose fingerprint differs; decodes and preprocesses each image as the feature
caches do, encodes it, rounds the features to the caches' float16 (so the scores equal the evaluation stage's
for the same images) and scores it. Work is done in shards of ``shard_size`` images in ``<out>.partial/``: a
killed run resumes with the shards done, and a shard is redone when its images' contents, the classifier, the
backbone or the image list changed. An image that cannot be decoded is reported by name and skipped (listed in
the summary). The output (written atomically, only once every shard is done) has one row per image: ``image``,
``labels`` (the classes the decision rule predicts), and the score and probability of every class:

* csv: ``image, labels`` (``;``-separated), then ``score:<class>`` and ``prob:<class>`` columns;
* jsonl: ``{"image", "labels": [...], "scores": {class: s}, "probabilities": {class: p}}``;
* parquet: ``image``, ``labels`` (list), ``scores`` and ``probabilities`` (fixed-size lists, classes in the
  file metadata).

The decision rule is the classifier's own (per-class thresholds chosen on its validation part, or top-k: the
summary says which and how it was chosen) unless ``--threshold`` or ``--top-k`` overrides it. With ``--labels``
(a manifest with ground truth) the summary also holds mAP and the decision rule's CP/CR/CF1/OP/OR/OF1 on the
images it labels, and ``--contact-sheet`` draws sample images with their top tags (and ground truth).
"""
from __future__ import annotations

import argparse
import glob as globlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from mlr_core.data.manifest import IMAGE_EXTENSIONS, image_files_under

FORMATS = ("csv", "jsonl", "parquet")


class PredictInputError(ValueError):
    """An input names nothing usable (a missing folder, an empty one, a glob matching no file...)."""


# ------------------------------------------------------------------------------------------------ inputs
def collect_images(inputs: Sequence[str | Path]) -> tuple[list[str], list[Path]]:
    """-> (image ids, paths) of ``inputs`` (module docstring), in input order, each folder / glob sorted."""
    from mlr_core.data.manifest import DatasetError, manifest_rows

    if not inputs:
        raise PredictInputError("no input given: name a folder, a glob, a manifest, a list or image files")
    ids, paths = [], []
    for given in map(str, inputs):
        p = Path(given)
        if p.is_dir():
            found = image_files_under(p)
            if not found:
                raise PredictInputError(f"{p}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            ids += found
            paths += [p / f for f in found]
        elif p.is_file() and p.suffix.lower() in (".csv", ".jsonl"):
            try:
                rows = [(n, image) for n, image, _, _ in manifest_rows(p)]
            except DatasetError as e:
                raise PredictInputError(str(e)) from None
            if not rows:
                raise PredictInputError(f"{p}: manifest has no rows")
            for n, image in rows:
                if not image:
                    raise PredictInputError(f"{p}:{n}: field 'image' is empty")
                ids.append(str(image))
                paths.append(Path(image) if Path(image).is_absolute() else p.parent / image)
        elif p.is_file() and p.suffix.lower() == ".txt":
            lines = [line.strip() for line in p.read_text().splitlines() if line.strip()]
            if not lines:
                raise PredictInputError(f"{p}: list of image files is empty")
            ids += lines
            paths += [Path(x) if Path(x).is_absolute() else p.parent / x for x in lines]
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                raise PredictInputError(f"{p}: not an image file ({', '.join(IMAGE_EXTENSIONS)}), a manifest "
                                        f"(.csv, .jsonl) or a list (.txt)")
            ids.append(given)
            paths.append(p)
        elif any(ch in given for ch in "*?["):
            found = sorted(Path(f) for f in globlib.glob(given, recursive=True)
                           if Path(f).is_file() and Path(f).suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise PredictInputError(f"{given}: the pattern matches no image file")
            ids += [str(f) for f in found]
            paths += found
        else:
            raise PredictInputError(f"{p}: no such folder or file")
    seen, dup = set(), []
    for i in ids:
        (dup.append(i) if i in seen else seen.add(i))
    if dup:
        raise PredictInputError(f"{len(dup)} images are named twice by the inputs (e.g. {dup[0]!r}): give each once")
    return ids, paths


def ground_truth(manifest: str | Path, classes: list[str], paths: Sequence[Path]) -> np.ndarray:
    """(N, C) targets of ``paths`` from a manifest of the generic format (matched by resolved file path; an image
    the manifest does not list is all IGNORE)."""
    from mlr_core.data.labels import IGNORE
    from mlr_core.data.manifest import read_manifest

    known = read_manifest(manifest, classes, check_files=False)
    index = {str(Path(p).resolve()): r for r, p in enumerate(known.paths)}
    out = np.full((len(paths), len(classes)), IGNORE, np.int8)
    for i, p in enumerate(paths):
        r = index.get(str(Path(p).resolve()))
        if r is not None:
            out[i] = known.targets[r]
    return out


def resolve_decision(decision: dict, threshold: float | None, top_k: int | None) -> dict:
    """The classifier's rule, or the one ``--threshold`` / ``--top-k`` gives instead."""
    if threshold is not None and top_k is not None:
        raise ValueError("give --threshold or --top-k, not both")
    if threshold is not None:
        return {"rule": "threshold", "value": float(threshold), "chosen_on": "given (--threshold / predict.threshold)"}
    if top_k is not None:
        return {"rule": "top_k", "k": int(top_k), "chosen_on": "given (--top-k / predict.top_k)"}
    return decision


# ------------------------------------------------------------------------------------------------ scoring
def predict(classifier_path: str | Path, inputs: Sequence[str | Path], out_path: str | Path, *, fmt: str | None = None,
            batch_size: int, shard_size: int, num_workers: int = 0, device: str = "auto",
            threshold: float | None = None, top_k: int | None = None, labels: str | Path | None = None,
            pretrained: str | None = None, precision: str = "fp32", summary_path: str | Path | None = None,
            contact_sheet: str | Path | None = None, sheet_images: int = 16, sheet_columns: int = 4,
            sheet_tags: int = 3) -> dict:
    """Score every image of ``inputs`` with the classifier and write ``out_path`` (module docstring); -> the
    summary (also written to ``summary_path``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from tqdm import tqdm

    from mlr_core.cache import ImageFiles, collate_images, item_list_hash, items_digest
    from mlr_core.calibration import check_decision, predict_labels
    from mlr_core.classifier import load_classifier, read_classifier_meta
    from mlr_core.io import atomic_write_json, file_sha256
    from mlr_core.models.clip import load_clip
    from mlr_core.models.features import encode_image_features
    from mlr_core.shards import ShardedWork

    out_path = Path(out_path)
    fmt = fmt or out_path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{out_path}: output format {fmt!r}, expected one of {FORMATS} (or that file extension)")
    # everything that can be checked is checked before the model loads or any image is decoded
    meta = read_classifier_meta(classifier_path)
    classes = list(meta["classes"])
    decision = check_decision(resolve_decision(meta["decision"], threshold, top_k), len(classes), "decision")
    ids, paths = collect_images(inputs)
    targets = ground_truth(labels, classes, paths) if labels is not None else None
    b = meta["backbone"]
    clip = load_clip(b["arch"], pretrained if pretrained is not None else b.get("pretrained"), device, precision,
                     b.get("image_size"))
    clf = load_classifier(classifier_path, clip)
    visual = clf.scorer.visual if clf.needs_images else clip.model.visual
    feature_dtype = getattr(torch, clf.features)
    state = {"classifier": file_sha256(classifier_path), "fingerprint": clip.fingerprint,
             "items": item_list_hash(ids), "n": len(ids), "shard_size": shard_size}
    work = ShardedWork(out_path.with_name(out_path.name + ".partial"), state, n_items=len(ids), shard_size=shard_size,
                       what="predict", shard_inputs=items_digest(ids, np.zeros((len(ids), 0), np.int8), paths))
    todo = work.todo()
    bar = tqdm(total=sum(hi - lo for lo, hi in map(work.bounds, todo)), desc=f"predict {clf.name}", unit="img")
    C = len(classes)
    for k in todo:
        lo, hi = work.bounds(k)
        loader = torch.utils.data.DataLoader(ImageFiles(paths[lo:hi], clip.preprocess), batch_size=batch_size,
                                             num_workers=num_workers, shuffle=False, collate_fn=collate_images)
        rows, scores, probs, skipped = [], [], [], []
        with torch.no_grad():
            for idx, images, errors in loader:
                for i, err in errors:
                    tqdm.write(f"skipped: {err}", file=sys.stderr)
                    skipped.append([ids[lo + i], err])
                bar.update(len(idx) + len(errors))
                if images is None:
                    continue
                if clf.needs_images:
                    s, p = clf.scorer.score_images(images, batch_size=batch_size)
                else:
                    f = encode_image_features(visual, images)
                    g = f.global_.to(feature_dtype).float().cpu()
                    d = f.dense.to(feature_dtype).float().cpu() if clf.needs_dense else None
                    s, p = clf.scorer(g, d)
                rows += [lo + i for i in idx]
                scores.append(s.float().numpy())
                probs.append(p.float().numpy())
        s = np.concatenate(scores) if scores else np.zeros((0, C), np.float32)
        p = np.concatenate(probs) if probs else np.zeros((0, C), np.float32)
        table = pa.table({"row": pa.array(rows, pa.int64()),
                          "scores": pa.FixedSizeListArray.from_arrays(pa.array(s.ravel(), pa.float32()), C),
                          "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel(), pa.float32()), C)})
        work.write(k, table.replace_schema_metadata({b"skipped": json.dumps(skipped).encode()}))
    bar.close()

    rows, scores, probs, skipped = [], [], [], []
    for shard in work.shards():
        t = pq.read_table(shard)
        n = t.num_rows
        rows += t.column("row").to_pylist()
        scores.append(t.column("scores").combine_chunks().values.to_numpy().reshape(n, C))
        probs.append(t.column("probabilities").combine_chunks().values.to_numpy().reshape(n, C))
        skipped += json.loads(t.schema.metadata[b"skipped"])
    if not rows:
        raise PredictInputError(f"none of the {len(ids)} images could be read (e.g. {skipped[0][1]}); nothing written")
    scores, probs = np.concatenate(scores), np.concatenate(probs)
    predicted = predict_labels(scores, probs, decision)
    out_ids = [ids[r] for r in rows]
    write_predictions(out_path, fmt, out_ids, classes, scores, probs, predicted, clf.name)
    summary = {"classifier": str(classifier_path), "method": clf.method, "run": clf.run, "output": str(out_path),
               "n_images": len(ids), "n_scored": len(rows), "n_skipped": len(skipped), "skipped": skipped,
               "decision": {k: v for k, v in decision.items() if k != "values"},
               "predicted_per_image": round(float(predicted.sum(1).mean()), 3) if len(rows) else None}
    if targets is not None:
        summary["against_labels"] = labelled_metrics(scores, probs, targets[rows], decision, labels)
    if contact_sheet is not None:
        draw_contact_sheet(contact_sheet, [paths[r] for r in rows], out_ids, classes, scores, probs, predicted,
                           None if targets is None else targets[rows], n=sheet_images, columns=sheet_columns,
                           tags=sheet_tags, title=f"{clf.name} on {', '.join(map(str, inputs))}")
    if summary_path is not None:
        atomic_write_json(summary_path, summary)
    work.done()
    return summary


def labelled_metrics(scores, probs, targets, decision: dict, labels) -> dict:
    """mAP and the decision rule's metrics over the images ``labels`` labels (the others are all IGNORE)."""
    from mlr_core.calibration import decision_metrics
    from mlr_core.metrics import multilabel_metrics

    keep = (targets != -1).any(1)
    if not keep.any():
        return {"labels": str(labels), "n_images": 0}
    m = multilabel_metrics(scores[keep], targets[keep], top_k=())
    return {"labels": str(labels), "n_images": int(keep.sum()), "mAP": round(m["mAP"], 3),
            "decision": decision_metrics(scores[keep], probs[keep], targets[keep], decision)}


def write_predictions(path: Path, fmt: str, ids: list[str], classes: list[str], scores: np.ndarray,
                      probs: np.ndarray, predicted: np.ndarray, name: str) -> None:
    """The per-image output, atomically (module docstring)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from mlr_core.io import atomic_path

    names = [[c for c, on in zip(classes, row) if on] for row in predicted]
    with atomic_path(path) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w") as f:
                for i, n, s, p in zip(ids, names, scores.tolist(), probs.tolist()):
                    f.write(json.dumps({"image": i, "labels": n, "scores": dict(zip(classes, s)),
                                        "probabilities": dict(zip(classes, p))}) + "\n")
        elif fmt == "csv":
            columns = {"image": ids, "labels": [";".join(n) for n in names]}
            columns.update({f"score:{c}": scores[:, j] for j, c in enumerate(classes)})
            columns.update({f"prob:{c}": probs[:, j] for j, c in enumerate(classes)})
            pcsv.write_csv(pa.table(columns), tmp)
        else:
            C = len(classes)
            table = pa.table({"image": ids, "labels": pa.array(names, pa.list_(pa.string())),
                              "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.ravel(), pa.float32()), C),
                              "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel(), pa.float32()), C)})
            meta = {"classes": classes, "classifier": name}
            pq.write_table(table.replace_schema_metadata({b"mlr_core": json.dumps(meta).encode()}), tmp)


def read_predictions(path: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray, list[list[str]]]:
    """-> (image ids, classes, scores, probabilities, predicted label names) of any output format."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        classes = list(rows[0]["scores"]) if rows else []
        return ([r["image"] for r in rows], classes, np.array([[r["scores"][c] for c in classes] for r in rows]),
                np.array([[r["probabilities"][c] for c in classes] for r in rows]), [r["labels"] for r in rows])
    if path.suffix == ".csv":
        t = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={"image": "string",
                                                                                  "labels": "string"}))
        classes = [n[len("score:"):] for n in t.column_names if n.startswith("score:")]
        return (t.column("image").to_pylist(), classes,
                np.stack([t.column(f"score:{c}").to_numpy() for c in classes], 1),
                np.stack([t.column(f"prob:{c}").to_numpy() for c in classes], 1),
                [[x for x in (v or "").split(";") if x] for v in t.column("labels").to_pylist()])
    t = pq.read_table(path)
    classes = json.loads(t.schema.metadata[b"mlr_core"])["classes"]
    n, C = t.num_rows, len(classes)
    return (t.column("image").to_pylist(), classes,
            t.column("scores").combine_chunks().values.to_numpy().reshape(n, C),
            t.column("probabilities").combine_chunks().values.to_numpy().reshape(n, C), t.column("labels").to_pylist())


# ------------------------------------------------------------------------------------------------ the sheet
def draw_contact_sheet(path: str | Path, paths: Sequence[Path], ids: Sequence[str], classes: list[str],
                       scores: np.ndarray, probs: np.ndarray, predicted: np.ndarray, targets: np.ndarray | None, *,
                       n: int, columns: int, tags: int, title: str) -> None:
    """A PNG of the first ``n`` images: each with its top ``tags`` classes by score (probability beside; bold:
    predicted by the rule; green / red: right / wrong where ground truth is known) and its true labels."""
    from PIL import Image

    from mlr_core.cache import to_rgb8
    from mlr_core.report import figure_style, new_figure, save_png

    n = min(n, len(paths))
    rows = max(1, -(-n // columns))
    with figure_style():
        fig = new_figure((2.6 * columns, 2.9 * rows + 0.4))
        fig.suptitle(title, fontsize=9)
        for i in range(rows * columns):
            ax = fig.add_subplot(rows, columns, i + 1)
            ax.set_axis_off()
            if i >= n:
                continue
            with Image.open(paths[i]) as im:
                ax.imshow(np.asarray(to_rgb8(im)), interpolation="nearest")
            order = np.argsort(-scores[i], kind="stable")[:tags]
            lines = []
            for c in order:
                mark = "" if targets is None or targets[i, c] == -1 else (" +" if targets[i, c] == 1 else " -")
                lines.append((f"{classes[c]} {scores[i, c]:.2f} ({probs[i, c]:.2f}){mark}", bool(predicted[i, c]),
                              None if not mark else ("tab:green" if (targets[i, c] == 1) == bool(predicted[i, c])
                                                     else "tab:red")))
            truth = None if targets is None else [classes[c] for c in np.flatnonzero(targets[i] == 1)]
            ax.set_title(str(ids[i])[-28:], fontsize=7)
            for j, (text, bold, color) in enumerate(lines):
                ax.text(0.0, -0.06 - 0.1 * j, text, transform=ax.transAxes, fontsize=7, va="top",
                        fontweight="bold" if bold else "normal", color=color or "black")
            if truth is not None:
                ax.text(0.0, -0.06 - 0.1 * len(lines), "truth: " + (", ".join(truth) or "none"),
                        transform=ax.transAxes, fontsize=6.5, va="top", color="dimgray")
        save_png(fig, Path(path))


# ------------------------------------------------------------------------------------------------ the CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlr-predict", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("classifier", help="a classifier export (data/classifiers/<method>/<run>.safetensors)")
    ap.add_argument("inputs", nargs="+", help="folders, globs, manifests (.csv/.jsonl), lists (.txt) or image files")
    ap.add_argument("--out", required=True, help="output file: .csv, .jsonl or .parquet")
    ap.add_argument("--format", choices=FORMATS, help="default: the --out extension")
    ap.add_argument("--threshold", type=float, help="one probability threshold for every class (replaces the "
                                                    "classifier's rule)")
    ap.add_argument("--top-k", type=int, help="the top k classes of each image (replaces the classifier's rule)")
    ap.add_argument("--labels", help="a manifest with ground truth: mAP and CF1 in the summary")
    ap.add_argument("--summary", help="write the summary JSON here")
    ap.add_argument("--contact-sheet", help="write a PNG of sample predictions here")
    ap.add_argument("--pretrained", help="the backbone checkpoint (default: the one the classifier recorded)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=1024, help="images per resumable shard")
    ap.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    from mlr_core.classifier import ClassifierError

    try:
        summary = predict(a.classifier, a.inputs, a.out, fmt=a.format, batch_size=a.batch_size,
                          shard_size=a.shard_size, num_workers=a.num_workers, device=a.device,
                          threshold=a.threshold, top_k=a.top_k, labels=a.labels, pretrained=a.pretrained,
                          precision=a.precision, summary_path=a.summary, contact_sheet=a.contact_sheet)
    except (ClassifierError, PredictInputError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{summary['n_scored']} images tagged ({summary['n_skipped']} skipped) -> {summary['output']}")
    if "against_labels" in summary and summary["against_labels"].get("n_images"):
        m = summary["against_labels"]
        print(f"against {m['labels']}: mAP {m['mAP']:.2f}, CF1 {m['decision']['CF1']:.2f} ({decision_text(summary)})")
    return 0


def decision_text(summary: dict) -> str:
    d = summary["decision"]
    return {"top_k": lambda: f"top {d['k']}", "threshold": lambda: f"threshold {d['value']}",
            "thresholds": lambda: "per-class thresholds"}[d["rule"]]()


if __name__ == "__main__":
    sys.exit(main())
