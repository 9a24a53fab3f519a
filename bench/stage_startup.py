"""The fixed cost of the default pipeline: how many stages `dvc repro` starts, and what each start costs
before any work (the stage script's own imports: torch, open_clip, mlr_core ...), in a fresh process.

For every stage of dvc.yaml (frozen ones excluded: a fresh clone never runs them) the script named in its
command has its top-level imports timed in a new Python process (the median of ``--repeats``); the fixed cost
is the sum over stages. ``--project DIR`` measures another checkout (e.g. a `git worktree` of an older commit)
with this venv.

Usage: python bench/stage_startup.py [--project .] [--repeats 3] [--out bench/results/stage_startup.json]
"""
from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from mlr_core.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def script_imports(script: Path) -> str:
    """The script's top-level import statements, as one line of Python (its work is not run)."""
    tree = ast.parse(script.read_text())
    lines = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
             and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    return "; ".join(lines)


def time_imports(project: Path, script: str, repeats: int) -> float:
    code = script_imports(project / script)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=project / "pipeline", check=True,
                       env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stage_startup.json")
    args = ap.parse_args()
    project = args.project.resolve()
    raw = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    frozen = {name for name, body in raw.items() if body.get("frozen")}
    listed = subprocess.run([str(Path(sys.executable).parent / "dvc"), "stage", "list", "--name-only"], cwd=project,
                            check=True, capture_output=True, text=True).stdout.split()
    stages = [s for s in listed if s.split("@")[0] not in frozen]
    scripts = Counter()
    for s in stages:
        body = raw[s.split("@")[0]]
        cmd = body.get("do", body)["cmd"]
        scripts[cmd.split()[1]] += 1
    per_script = {script: round(time_imports(project, script, args.repeats), 2) for script in sorted(scripts)}
    total = sum(per_script[s] * n for s, n in scripts.items())
    result = {"project": str(project.relative_to(ROOT)) if project.is_relative_to(ROOT) else project.name,
              "stages_run": len(stages), "stages_per_script": dict(sorted(scripts.items())),
              "start_s_per_script": per_script, "fixed_cost_s": round(total, 1), "repeats": args.repeats}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
