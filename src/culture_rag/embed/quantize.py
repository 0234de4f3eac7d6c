"""int8 quantization of the passage graph, and which int8 kernels this CPU runs it with."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

# int8 passages: u8 activations (dynamic, one scale per run) times s8 weights cut to 7 bits
# (reduce_range), one scale per output channel. With 7-bit weights a pair of products fits int16,
# so the AVX2 and AVX-512BW kernels (vpmaddubsw, which saturates pairs at int16) sum exactly
# like the VNNI and AMX ones; only fp32 rounding still differs, and vectors from CPUs with and
# without VNNI agree far more closely than either does with torch (bench/quantizers.py).
INT8_SCHEME = "u8s8-w7-channel"


def int8_graph(raw: Path, out: Path, config) -> None:
    """Quantize the unfused graph (INT8_SCHEME): on the fused one the attention stays fp32 and int8
    gains little; per-channel scales keep cosine to fp32 near 0.99 where per-tensor gave 0.91."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(raw), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (Linux), else numpy's own CPUID probe."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # private, hence the fallback
    except ImportError:
        return frozenset()
    return frozenset(name.lower() for name, present in __cpu_features__.items() if present)


def int8_kernels(flags: frozenset[str] | None = None) -> str:
    """The family of int8 matrix kernels ONNX Runtime picks on this CPU. They differ in how they
    sum u8 x s8 products: exactly in int32 (AMX, VNNI) or in saturating int16 pairs (AVX2,
    AVX-512BW), which is why INT8_SCHEME keeps weights to 7 bits; an index records the family."""
    # Linux spells avx512_vnni what numpy calls AVX512VNNI: compare without underscores.
    names = {f.replace("_", "") for f in (cpu_flags() if flags is None else flags)}
    for family, needs in (
        ("amx-int8", {"amxint8", "amxtile"}),
        ("avx512-vnni", {"avx512vnni", "avx512bw"}),
        ("avx-vnni", {"avxvnni"}),
        ("avx512bw", {"avx512bw"}),
        ("avx2", {"avx2"}),
        ("sse4.1", {"sse41"}),
        ("neon-dotprod", {"asimddp"}),
        ("neon", {"asimd"}),
    ):
        if needs <= names:
            return family
    return f"generic-{platform.machine() or 'unknown'}"
