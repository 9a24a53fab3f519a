"""mlr-core: CLIP for multi-label recognition with little or no labelled data.

Same params and inputs must give byte-identical outputs on every machine. On x86 CPUs the math libraries
pick their kernels by instruction set (AVX2, AVX-512, AMX) and, for oneDNN's convolutions and MKL's default
mode, by core count and cache sizes too, and the kernels round differently: a feature cache made on one CPU (or
with another thread count) then differs in its last bits from one made on another. Importing mlr_core pins the
CPU math: MKL to its conditional-numerical-reproducibility AVX2 code path in strict mode (``MKL_CBWR=AVX2,STRICT``,
the same bits on any AVX2 CPU and thread count), PyTorch's own kernels to AVX2, and oneDNN off
and NNPACK off (``torch.backends.mkldnn.enabled = False``, ``torch.backends.nnpack.set_flags(False)``, set as soon
as torch is imported: convolutions then run as ATen's im2col + MKL GEMM). The libraries read these settings at their first computation, so import mlr_core before
computing with torch. It costs speed on CPU (bench/cpu_math.py: a random-weight RN50 encodes images about 2.7x
slower than with oneDNN on AVX-512 + AMX); ``MLR_CPU_MATH=native`` opts out (fast, not bit-identical across CPUs
or thread counts). GPUs are not affected (nor made bit-identical across GPU models).
"""
import os as _os
import sys as _sys

_PINNED = _os.environ.get("MLR_CPU_MATH", "avx2") == "avx2"


def _pin_convolutions(torch) -> None:
    torch.backends.mkldnn.enabled = False
    # NNPACK (ATen's convolution for batches of 16 or more) sizes its reduction blocks from the CPU's cache
    # sizes, so the same batch may sum in another order on another CPU model: with it, the tinyworld image
    # features made on an AMD EPYC differed from those made on an Intel Xeon (the text features, MKL GEMM
    # only, agreed). ATen's im2col + MKL GEMM instead was also faster on that EPYC (182 vs 162 images/s)
    torch.backends.nnpack.set_flags(False)


class _PinTorchOnImport:
    """A meta-path finder that lets torch import as usual, then disables oneDNN on the fresh module (mlr_core
    itself does not import torch: stages that never compute with it do not pay for it)."""

    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        import importlib.util

        _sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_pin(module):
            exec_module(module)
            _pin_convolutions(module)

        spec.loader.exec_module = exec_then_pin
        return spec


if _PINNED:
    for _key, _value in (("MKL_CBWR", "AVX2,STRICT"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2")):
        _os.environ.setdefault(_key, _value)
    if "torch" in _sys.modules:
        _pin_convolutions(_sys.modules["torch"])
    else:
        _sys.meta_path.insert(0, _PinTorchOnImport())
