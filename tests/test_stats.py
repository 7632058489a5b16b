"""The statistics every verdict rests on, against published Student-t quantiles and worked examples (an
independent numerical integration of the t density where a table has no entry)."""
import math
import statistics

import pytest

from dynprune.analysis import stats

# Two-sided 95 % critical values t(0.975, df), as printed in every t table (e.g. NIST/SEMATECH e-Handbook,
# section 1.3.6.7.2): df -> value.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 30: 2.042, 100: 1.984}


@pytest.mark.parametrize("df, value", T_TABLE.items())
def test_the_t_quantile_is_the_tables(df, value):
    assert stats.t_quantile(0.975, df) == pytest.approx(value, abs=5e-4)
    assert stats.t_quantile(0.025, df) == pytest.approx(-value, abs=5e-4)  # symmetric


def t_density_integral(x: float, df: float, steps: int = 20000) -> float:
    """P(0 < T < x) by Simpson's rule on the t density: an oracle that shares nothing with stats.py."""
    norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    f = lambda t: norm * (1 + t * t / df) ** (-(df + 1) / 2)  # noqa: E731
    h = x / steps
    return h / 3 * (f(0) + f(x) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps)))


@pytest.mark.parametrize("df", [4.0755, 7.3, 2.5])
def test_the_t_quantile_at_fractional_degrees_of_freedom(df):
    """Welch's degrees of freedom are fractional: 95 % of the mass lies within the quantile."""
    assert t_density_integral(stats.t_quantile(0.975, df), df) == pytest.approx(0.475, abs=1e-6)


def test_the_interval_of_a_mean_uses_n_minus_one_degrees_of_freedom():
    s = stats.summarize([1.0, 2.0, 3.0])  # mean 2, sample sd 1, n 3: half-width t(0.975, 2) / sqrt(3)
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)
    assert s.low == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-4)
    assert s.high == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-4)
    one = stats.summarize([98.5])
    assert one.low is None and one.sd == 0 and one.text() == "98.50 (n=1)"


def test_a_welch_interval_worked_by_hand():
    """a = 1, 2, 3 (mean 2, variance 1); b = 2, 4, 6, 8 (mean 5, variance 20/3).
    Standard error sqrt(1/3 + 5/3) = sqrt(2); Welch's degrees of freedom
    2^2 / ((1/3)^2 / 2 + (5/3)^2 / 3) = 4 / (1/18 + 25/27) = 216 / 53 = 4.0755 (the pooled n_a + n_b - 2 would be 5)."""
    d = stats.welch([1, 2, 3], [2, 4, 6, 8])
    assert d.diff == -3 and d.df == pytest.approx(216 / 53, rel=1e-12)
    half = stats.t_quantile(0.975, 216 / 53) * math.sqrt(2)
    assert t_density_integral(half / math.sqrt(2), 216 / 53) == pytest.approx(0.475, abs=1e-6)
    assert (d.low, d.high) == (pytest.approx(-3 - half), pytest.approx(-3 + half))
    assert d.low == pytest.approx(-6.898, abs=2e-3) and d.high == pytest.approx(0.898, abs=2e-3)
    assert not d.excludes_zero


def test_welch_calls_a_difference_only_where_the_interval_excludes_zero():
    clear = stats.welch([99.1, 99.2, 99.0], [98.0, 98.1, 97.9])
    assert clear.excludes_zero and clear.low > 0
    assert stats.welch([1.0], [2.0, 3.0]).low is None  # no interval with one run on a side
    same = stats.welch([5.0, 5.0], [4.0, 4.0])  # no spread: the difference is exact
    assert same.low == same.high == 1.0 and same.excludes_zero


def test_summaries_agree_with_the_standard_library():
    values = [97.8, 98.1, 98.4, 97.9, 98.3]
    s = stats.summarize(values)
    assert s.mean == pytest.approx(statistics.fmean(values)) and s.sd == pytest.approx(statistics.stdev(values))
    assert s.text() == f"{s.mean:.2f} ± {s.sd:.2f} (n=5, 95 % CI {s.low:.2f}–{s.high:.2f})"
