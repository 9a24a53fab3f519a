"""The CPU math pin of mlr_core/__init__.py: set before torch computes, in a fresh process each."""
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, os
import mlr_core, torch
print(json.dumps({"mkldnn": torch.backends.mkldnn.enabled, "nnpack": torch._C._get_nnpack_enabled(),
                  "env": {k: os.environ.get(k) for k in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}}))
"""


def _probe(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLR_CPU_MATH", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    if setting:
        env["MLR_CPU_MATH"] = setting
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", [None, "avx2"])
def test_default_pin_turns_off_the_cpu_dependent_convolution_backends(setting):
    # oneDNN and NNPACK pick kernels or blockings by CPU model; with either on, image features differed
    # between an Intel Xeon and an AMD EPYC
    got = _probe(setting)
    assert got["mkldnn"] is False and got["nnpack"] is False
    assert got["env"] == {"MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def test_native_opts_out_of_the_pin():
    got = _probe("native")
    assert got["mkldnn"] is True and got["env"]["MKL_CBWR"] is None
