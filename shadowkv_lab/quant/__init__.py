"""Quantizers for landmarks, keys and values: plain floats, FP8, NVFP4, HIGGS, residual landmarks.

    q = make_quantizer("higgs-4-256", group=128)
    qt = q.quantize(x)            # x (N, C) -> QuantizedTensor
    x_hat = q.dequantize(qt)      # (N, C) float32
    q.bits_per_element(C)         # exact, incl. scales

See FORMAT_HELP for the spec grammar and docs/algorithms.md ("Quantizers") for the definitions.
"""
from .base import QuantizedTensor, Quantizer
from .formats import FORMAT_HELP, FormatSpec, make_quantizer, parse_format
from .fp8 import FP8Quantizer
from .grids import generate_grid, grid_mse, load_grid
from .hadamard import fwht, hadamard_matrix
from .higgs import HiggsQuantizer, higgs_bits
from .nvfp4 import NVFP4Quantizer
from .plain import PlainQuantizer
from .residual import ResidualQuantizer

__all__ = [
    "FORMAT_HELP",
    "FP8Quantizer",
    "FormatSpec",
    "HiggsQuantizer",
    "NVFP4Quantizer",
    "PlainQuantizer",
    "QuantizedTensor",
    "Quantizer",
    "ResidualQuantizer",
    "fwht",
    "generate_grid",
    "grid_mse",
    "hadamard_matrix",
    "higgs_bits",
    "load_grid",
    "make_quantizer",
    "parse_format",
]
