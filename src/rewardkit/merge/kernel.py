"""The exact float32 kernel of the weight average: sum_i w_i t_i / sum_i w_i, rounded as mergekit's
torch code rounds it (``acc.addcmul_(t, w)``: a fused multiply-add, one rounding per step), in
cache-sized chunks. Pure numpy; the orchestration (reading, blocks, writing) is ``merge.average``.

Where every product w_i * t_i is exact in float32 (weights 1, or short weights >= 1) a multiply and an
add give torch's bits; otherwise each step is computed in float64 and rounded once, and the rare
elements where that double rounding could differ from a single one (a float64 sum exactly halfway
between two float32 values, or subnormals) are recomputed exactly.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

CHUNK = 2**15  # elements computed at once: every buffer of a chunk stays in the CPU's cache


def as_float32(t: np.ndarray, dtype: str, bits: np.ndarray) -> np.ndarray:
    """A block widened to float32, exactly (bfloat16 is the top half of a float32: shift its bits)."""
    if dtype == "BF16":
        np.left_shift(t.reshape(-1), 16, out=bits, dtype=np.uint32)
        return bits.view(np.float32)
    return t.reshape(-1)  # F32 as is; F16 / F64 are converted inside the multiply


def from_float32(acc: np.ndarray, dtype: str, bits: np.ndarray, out: np.ndarray) -> None:
    """The float32 average into ``out`` in the output dtype, rounded to nearest even as torch's
    ``.to()`` rounds (``out`` may be ``acc`` itself for float32)."""
    if dtype == "BF16":  # round the low 16 bits to nearest, ties to even (finite values: checked before)
        u = acc.view(np.uint32)
        np.right_shift(u, 16, out=bits)
        np.bitwise_and(bits, 1, out=bits)
        np.add(bits, 0x7FFF, out=bits)
        np.add(bits, u, out=bits)
        np.right_shift(bits, 16, out=bits)
        np.copyto(out, bits, casting="unsafe")  # < 2**16 after the shift
    elif out is not acc:
        np.copyto(out, acc, casting="same_kind")


def overflowed(out: np.ndarray, dtype: str) -> bool:
    """Whether rounding a finite float32 average to a narrower type made an infinity."""
    if dtype == "F16":
        return not bool(np.isfinite(out).all())
    if dtype == "BF16":  # exponent bits all set
        return bool(((out & 0x7F80) == 0x7F80).any())
    return False


MANTISSA = {"BF16": 8, "F16": 11, "F32": 24}  # significant bits of each input type


def exact_product(c: np.float32, in_dtype: str) -> bool:
    """Whether ``t * c`` is exact in float32 for every finite ``t`` of ``in_dtype``: ``c >= 1`` (no
    underflow) and a power of two or short enough, so rounding the product changes nothing."""
    if not 1 <= c < 2.0**64:
        return False
    mantissa = int(np.float32(c).view(np.uint32)) & 0x7FFFFF | 0x800000
    bits = 24 - ((mantissa & -mantissa).bit_length() - 1)  # significant bits of c
    return bits == 1 or bits + MANTISSA[in_dtype] <= 24  # a power of 2, or a short product


def fused_scratch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(CHUNK), np.empty(CHUNK, np.uint64), np.empty((2, CHUNK), bool)


def fused_add(acc: np.ndarray, t: np.ndarray, c: np.float32, scratch=None) -> None:
    """``acc = round32(acc + t * c)`` with one rounding, as a fused multiply-add (torch's ``addcmul_``)
    gives, for float32 ``acc``, float32 / float16 ``t`` and a float32 ``c``; ``scratch`` (from
    :func:`fused_scratch`) saves allocating per call.

    ``t * c`` (at most 48 significant bits) and ``acc + t * c`` are computed in float64; the product is
    exact, the sum is rounded once there and once more to float32. Two roundings give the fused result
    except where the float64 sum lands exactly halfway between two float32 values (or in float32's
    subnormal range); those rare elements are recomputed exactly."""
    s, bits, flags = scratch or fused_scratch()
    c64 = np.float64(c)
    for lo in range(0, acc.size, CHUNK):
        a, x = acc[lo : lo + CHUNK], t[lo : lo + CHUNK]
        m = a.size
        sm, bm, midpoint, tiny = s[:m], bits[:m], flags[0, :m], flags[1, :m]
        np.multiply(x, c64, out=sm, dtype=np.float64)
        np.add(sm, a, out=sm)
        # a float32 midpoint: the 29 float64 mantissa bits float32 drops are exactly 1000...0
        np.bitwise_and(sm.view(np.uint64), 0x1FFFFFFF, out=bm)
        np.equal(bm, 0x10000000, out=midpoint)
        np.absolute(sm, out=bm.view(np.float64))
        np.less(bm.view(np.float64), 2.0**-126, out=tiny)  # float32 subnormals (and zeros)
        np.logical_or(midpoint, tiny, out=midpoint)
        idx = np.flatnonzero(midpoint) if midpoint.any() else None
        if idx is not None:
            idx = idx[sm[idx] != 0]
            exact = [round32(a[i], x[i], c) for i in idx]
        np.copyto(a, sm, casting="same_kind")
        if idx is not None:
            a[idx] = exact


def round32(a: np.float32, t, c: np.float32) -> np.float32:
    """``a + t * c`` computed exactly and rounded once to float32 (nearest, ties to even)."""
    exact = Fraction(float(a)) + Fraction(float(t)) * Fraction(float(c))
    near = np.float32(float(exact))
    candidates = [near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))]
    candidates = [v for v in candidates if np.isfinite(v)] or [near]
    return min(candidates, key=lambda v: (abs(Fraction(float(v)) - exact), int(v.view(np.uint32)) & 1))


class Plan(NamedTuple):
    coef: np.ndarray  # float32 weights as given
    denom: np.float32  # their float32 sum
    scale: np.float32 | None  # 1 / denom where that is exact
    fused: bool  # whether products need the fused multiply-add emulation
    in_dtypes: tuple[str, ...]  # each member's dtype (they differ only where the output dtype is given)
    out_dtype: str


def average_part(
    acc: np.ndarray, out: np.ndarray, flat: list[np.ndarray], scratch, plan: Plan
) -> tuple[bool, bool]:
    """Average a block, chunk by chunk (every member and step at once, in cache): ``acc`` gets the
    float32 average, ``out`` (``acc`` itself for float32) the average in the output dtype; ``flat[i]``
    is member i's block in its storage type (``plan.in_dtypes[i]``), widened exactly as it is used.
    Returns whether any average is NaN or infinite, and whether any overflowed the output dtype."""
    term_buf, bits_buf, fused_scratch = scratch
    zero = np.float32(0)
    nonfinite = overflow = False
    for lo in range(0, acc.size, CHUNK):
        a = acc[lo : lo + CHUNK]
        o = a if out is acc else out[lo : lo + CHUNK]
        term, bits = term_buf[: a.size], bits_buf[: a.size]
        for j, (c, t, dtype) in enumerate(zip(plan.coef, flat, plan.in_dtypes)):
            x = as_float32(t[lo : lo + CHUNK], dtype, bits)
            if plan.fused and dtype != "F64":
                if j == 0:
                    a.fill(0)
                fused_add(a, x, c, fused_scratch)
                continue
            if c != 1 or dtype == "F64":  # F64 terms are rounded to float32 here
                np.multiply(x, c, out=term, casting="same_kind")
                x = term
            np.add(x, zero, out=a) if j == 0 else np.add(a, x, out=a)  # 0 + x: -0 becomes +0
        if plan.scale is not None:
            np.multiply(a, plan.scale, out=a)
        else:
            np.divide(a, plan.denom, out=a)
        # a NaN or infinity makes the sum one (an overflowing sum of finite values is checked again)
        if not np.isfinite(a.sum()) and not np.isfinite(a).all():
            nonfinite = True
            continue
        from_float32(a, plan.out_dtype, bits, o)
        overflow = overflow or overflowed(o, plan.out_dtype)
    return nonfinite, overflow


def denominator(coef: np.ndarray) -> np.float32:
    """``sum_i w_i`` in float32 as mergekit gets it (a torch sum). Up to 4 weights, or whole-number
    weights (every order exact), that is the plain left-to-right sum; otherwise torch's reduction order
    (which depends on the CPU's vector width) is not reproduced here, so torch computes it."""
    if len(coef) <= 4 or (all(float(c).is_integer() for c in coef) and coef.sum(dtype=np.float64) < 2**24):
        return coef.sum(dtype=np.float32)
    import torch  # only for 5+ members with fractional weights

    return np.float32(torch.from_numpy(coef).sum().item())
