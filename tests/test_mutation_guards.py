"""Tests written to kill the mutants `make mutate` found alive (tests/mutation/): each asserts against an
independent oracle (a hand computation, a published table), never against the code under test."""
import math

import pytest

from dynprune.analysis import stats


def test_t_quantile_with_two_and_four_degrees_of_freedom_is_the_published_value():
    # t(0.975, 2) = 4.303, t(0.975, 4) = 2.776 (NIST/SEMATECH e-Handbook 1.3.6.7.2)
    assert stats.t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert math.isclose(stats.t_cdf(0.0, 3), 0.5)
