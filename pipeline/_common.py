"""What every stage script shares: reading params.yaml once, validated, before any work starts."""
from __future__ import annotations

import argparse
import sys

from mlr_core.config import Params, ParamsError, load_params


def stage_args(description: str, extra=None) -> tuple[argparse.Namespace, Params]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    try:
        params = load_params(args.params)
    except ParamsError as e:
        sys.exit(f"error: {e}")
    return args, params
