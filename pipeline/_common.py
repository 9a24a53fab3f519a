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


def image_supervised_args(description: str, features_flag: str, features_default: str
                          ) -> tuple[argparse.Namespace, Params]:
    """The arguments train_image_supervised and evaluate_image_supervised share: which method and run,
    the label budgets, and one cached-features file (``features_flag``, e.g. ``--trainval``)."""
    from mlr_core.supervised import METHODS  # imported here so that every other stage skips its imports

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--method", required=True, choices=METHODS)
        parser.add_argument("--run", required=True)
        parser.add_argument("--budgets", default="data/budgets")
        parser.add_argument(features_flag, default=features_default)

    return stage_args(description, extra)
