"""Format spec strings -> validated FormatSpec -> Quantizer."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Quantizer
from .fp8 import FP8Quantizer
from .grids import known_grids
from .hadamard import is_power_of_two
from .higgs import SCALE_DTYPES, HiggsQuantizer
from .nvfp4 import NVFP4Quantizer
from .plain import PLAIN_DTYPES, PlainQuantizer
from .residual import ResidualQuantizer

RESIDUAL_DEFAULTS = {"m": "2", "main": "higgs-4-256", "res": "higgs-16-256"}


def _grid_list() -> str:
    return ", ".join(f"{p}-{n}" for p, n in known_grids())


FORMAT_HELP = f"""\
Quantization format spec strings:
  bf16 | fp16 | fp32          plain storage in that dtype
  fp8                         cast to float8_e4m3fn, saturating at +-448, no scale (8 bits)
  nvfp4                       E2M1 in blocks of 16, E4M3 block scales, fp32 global scale (4.5 bits)
  higgs-{{p}}-{{n}}[:signs][:scale=fp32|bf16]
                              HIGGS with grid EDEN{{p}}-{{n}} (log2(n)/p bits + scale_bits/group);
                              needs group = Hadamard group size (power of two, >= p);
                              :signs = fixed seeded random +-1 diagonal before the rotation;
                              :scale = storage dtype of the per-group L2 scales (default fp32).
                              Grids (p-n): {_grid_list()}
  residual:m={{m}},main={{spec}},res={{spec}}
                              residual landmarks: mean of each m consecutive rows quantized with
                              main, per-row residual quantized with res (both non-residual specs;
                              group applies to both). Defaults: m=2, main=higgs-4-256, res=higgs-16-256.
Example: make_quantizer("higgs-4-256", group=128); make_quantizer("residual:m=2,main=higgs-4-256,res=higgs-16-256", group=128)
"""

_SIMPLE = sorted(PLAIN_DTYPES) + ["fp8", "nvfp4"]
_ALLOWED = _SIMPLE + ["higgs-{p}-{n}[:signs][:scale=fp32|bf16]", "residual:m={m},main={spec},res={spec}"]


@dataclass(frozen=True)
class FormatSpec:
    """Parsed spec. kind in {"plain", "fp8", "nvfp4", "higgs", "residual"}."""

    kind: str
    dtype: str | None = None  # plain
    p: int | None = None  # higgs
    n: int | None = None
    signs: bool = False
    scale_dtype: str = "fp32"
    m: int | None = None  # residual
    main: "FormatSpec | None" = None
    res: "FormatSpec | None" = None

    @property
    def name(self) -> str:
        if self.kind == "plain":
            return self.dtype
        if self.kind in ("fp8", "nvfp4"):
            return self.kind
        if self.kind == "higgs":
            s = f"higgs-{self.p}-{self.n}" + (":signs" if self.signs else "")
            return s + (f":scale={self.scale_dtype}" if self.scale_dtype != "fp32" else "")
        return f"residual:m={self.m},main={self.main.name},res={self.res.name}"


def _bad(what: str, value, allowed) -> ValueError:
    return ValueError(f"bad {what} {value!r}; allowed: {allowed} (see shadowkv_lab.quant.FORMAT_HELP)")


def _parse_int(what: str, text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _bad(what, text, f"an integer (in spec {spec!r})") from None


def _parse_higgs(spec: str) -> FormatSpec:
    head, *opts = spec.split(":")
    parts = head.split("-")
    if len(parts) != 3:
        raise _bad("HIGGS spec", spec, "higgs-{p}-{n}[:signs][:scale=fp32|bf16]")
    p = _parse_int("HIGGS grid dimension p", parts[1], spec)
    n = _parse_int("HIGGS grid size n", parts[2], spec)
    if (p, n) not in known_grids():
        raise _bad("HIGGS grid", f"{p}-{n}", f"grids (p-n) {_grid_list()}")
    signs, scale_dtype = False, "fp32"
    for opt in opts:
        if opt == "signs":
            signs = True
        elif opt.startswith("scale="):
            scale_dtype = opt[len("scale="):]
            if scale_dtype not in SCALE_DTYPES:
                raise _bad("HIGGS scale dtype", scale_dtype, sorted(SCALE_DTYPES))
        else:
            raise _bad("HIGGS option", opt, ["signs", "scale=fp32", "scale=bf16"])
    return FormatSpec("higgs", p=p, n=n, signs=signs, scale_dtype=scale_dtype)


def _parse_residual(spec: str) -> FormatSpec:
    body = spec[len("residual"):].lstrip(":")
    fields = dict(RESIDUAL_DEFAULTS)
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in RESIDUAL_DEFAULTS:
            raise _bad("residual field", item, ["m={m}", "main={spec}", "res={spec}"])
        fields[key] = value.strip()
    m = _parse_int("residual meta chunk size m", fields["m"], spec)
    if m < 1:
        raise _bad("residual meta chunk size m", m, "an integer >= 1")
    sub = {}
    for key in ("main", "res"):
        if fields[key].startswith("residual"):
            raise _bad(f"residual {key} spec", fields[key], "a non-residual spec")
        sub[key] = parse_format(fields[key])
    return FormatSpec("residual", m=m, main=sub["main"], res=sub["res"])


def parse_format(spec: str) -> FormatSpec:
    """Parse and validate a format spec string (see FORMAT_HELP). Raises ValueError."""
    if isinstance(spec, FormatSpec):
        return spec
    if not isinstance(spec, str):
        raise _bad("format spec", spec, _ALLOWED)
    s = spec.strip().lower()
    if s in PLAIN_DTYPES:
        return FormatSpec("plain", dtype=s)
    if s in ("fp8", "nvfp4"):
        return FormatSpec(s)
    if s.startswith("higgs-"):
        return _parse_higgs(s)
    if s == "residual" or s.startswith("residual:"):
        return _parse_residual(s)
    raise _bad("format spec", spec, _ALLOWED)


def _check_group(group, spec: FormatSpec) -> int:
    if group is None:
        raise ValueError(f"format {spec.name!r} needs group= (Hadamard group size, a power of two >= {spec.p})")
    if isinstance(group, bool) or not isinstance(group, int) or not is_power_of_two(group):
        raise ValueError(f"bad group {group!r} for {spec.name!r}; allowed: a power of two >= {spec.p} (e.g. 128, 1024)")
    if group < spec.p:
        raise ValueError(f"bad group {group!r} for {spec.name!r}; allowed: a power of two >= p={spec.p}")
    return group


def build_quantizer(spec: FormatSpec, group: int | None = None, seed: int | None = None) -> Quantizer:
    if spec.kind == "plain":
        return PlainQuantizer(spec.dtype)
    if spec.kind == "fp8":
        return FP8Quantizer()
    if spec.kind == "nvfp4":
        return NVFP4Quantizer()
    if spec.kind == "higgs":
        g = _check_group(group, spec)
        return HiggsQuantizer(spec.p, spec.n, g, signs=spec.signs, seed=seed or 0, scale_dtype=spec.scale_dtype)
    return ResidualQuantizer(spec.m, build_quantizer(spec.main, group, seed), build_quantizer(spec.res, group, seed))


def make_quantizer(spec: str, group: int | None = None, seed: int | None = None) -> Quantizer:
    """Quantizer for a spec string. `group` = HIGGS Hadamard group (ignored by formats without one);
    `seed` = seed of the optional random signs (default 0)."""
    return build_quantizer(parse_format(spec), group, seed)
