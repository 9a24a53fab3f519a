"""Stage report: every method's results aggregated over its seeds (mean, sample std, n, seeds) into one JSON
and one Markdown table, and the offline PNG figures (mAP per method, controls, partial labels, few shot, PR
curves, per-class AP heat map); see mlr_core/report.py. No params: only paths."""
import sys

from _common import stage_args

from mlr_core.report import build_report

# no params: the stage is a function of the metrics and plots it reads (stage_args still validates params.yaml
# and checks the stage name, like every stage)
stage = stage_args(__doc__, lambda p: (
    p.add_argument("--metrics-dir", default="metrics", help="metrics/<name>.json and metrics/<method>/<run>.json"),
    p.add_argument("--plots-dir", default="plots", help="holds ap_per_class/ and pr_curve/"),
    p.add_argument("--out-json", default="metrics/report.json"),
    p.add_argument("--out-md", default="metrics/report.md"),
    p.add_argument("--figures-dir", default="plots/report")), stages={"report": None})
args = stage.args
try:
    report = build_report(args.metrics_dir, args.plots_dir, args.out_json, args.out_md, args.figures_dir)
except (ValueError, OSError) as e:
    sys.exit(f"error: {e}")
written = report["figures"]["written"]
print(f"report: {len(report['entries'])} (method, group) entries -> {args.out_json}, {args.out_md}; "
      f"{len(written)} figures in {args.figures_dir} ({', '.join(written) or 'none'})")
for name, reason in report["figures"]["skipped"].items():
    print(f"  skipped {name}: {reason}")
