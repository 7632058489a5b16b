"""The statistics behind every claim: mean, sample standard deviation, Student-t and Welch 95 % intervals.

No SciPy: the t quantile comes from the regularised incomplete beta function (a continued fraction,
Numerical Recipes 6.4), inverted by bisection — exact to well below the digits ever shown.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    mean: float
    sd: float          # sample standard deviation (n - 1); 0 for one value
    n: int
    low: float | None  # 95 % interval of the mean (Student t); None for n < 2
    high: float | None

    def text(self, digits: int = 2) -> str:
        """'98.55 ± 0.04 (n=3, 95 % CI 98.45–98.65)'; one run is just '98.55 (n=1)'."""
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n=1)"
        return (f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} (n={self.n}, 95 % CI "
                f"{self.low:.{digits}f}–{self.high:.{digits}f})")


def summarize(values: list[float]) -> Summary:
    values = [float(v) for v in values]
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Summary(mean, 0.0, n, None, None)
    sd = statistics.stdev(values)
    half = t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    return Summary(mean, sd, n, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    diff: float                # mean(a) - mean(b)
    low: float | None          # Welch 95 % interval; None when either side has n < 2
    high: float | None
    df: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    def text(self, digits: int = 2) -> str:
        if self.low is None:
            return f"{self.diff:+.{digits}f} (no interval: n < 2)"
        return f"{self.diff:+.{digits}f} (95 % CI {self.low:+.{digits}f} to {self.high:+.{digits}f})"


def welch(a: list[float], b: list[float]) -> Difference:
    """mean(a) - mean(b) with Welch's 95 % interval (unequal variances)."""
    sa, sb = summarize(a), summarize(b)
    diff = sa.mean - sb.mean
    if sa.n < 2 or sb.n < 2:
        return Difference(diff, None, None, None)
    va, vb = sa.sd ** 2 / sa.n, sb.sd ** 2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, float(sa.n + sb.n - 2))
    df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))
    half = t_quantile(0.975, df) * se
    return Difference(diff, diff - half, diff + half, df)


# -- Student t ------------------------------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (df may be fractional, as in Welch's test)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
