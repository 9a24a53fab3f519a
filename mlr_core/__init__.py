"""mlr-core: CLIP for multi-label recognition with little or no labelled data.

Same params and inputs must give byte-identical outputs on every machine. On x86 CPUs the math libraries
pick their kernels by instruction set (AVX2, AVX-512, AMX), and the kernels round differently, so a
feature cache made on one CPU differs in its last bits from one made on another. Importing mlr_core pins
MKL and oneDNN (and PyTorch's own kernels) to AVX2, which every x86-64 server of the last decade has; the
libraries read these settings at their first computation, so import mlr_core before computing with torch.
``MLR_CPU_MATH=native`` opts out (faster on AVX-512 machines, not bit-identical across CPUs). GPUs are not
affected (nor made bit-identical across GPU models).
"""
import os as _os

if _os.environ.get("MLR_CPU_MATH", "avx2") == "avx2":
    for _key, _value in (("MKL_CBWR", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2")):
        _os.environ.setdefault(_key, _value)
