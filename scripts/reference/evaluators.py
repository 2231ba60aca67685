#!/usr/bin/env python3
"""Reference figures for the built-in evaluators, from the libraries auditors check with.

scipy.stats.ks_2samp and chisquare, scipy.spatial.distance.jensenshannon, fairlearn's
demographic_parity_difference and equalized_odds_difference, and numpy for PSI and
disparate impact (their definitions). Writes tests/data/evaluator_reference.json, which
tests/evaluators.rs checks to 1e-9.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install scipy fairlearn numpy
    /tmp/ref/bin/python scripts/reference/evaluators.py
"""
import json
import os

import fairlearn
import numpy as np
import scipy
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare, ks_2samp

rng = np.random.default_rng(20261125)
cases = []


def f(x):
    return [float(v) for v in x]


# Kolmogorov-Smirnov: exact (equal and unequal sizes, ties) and asymptotic regimes.
for n1, n2, shift, scale, rounding in [
    (5, 5, 0.0, 1.0, None), (10, 10, 0.5, 1.0, None), (7, 13, 0.3, 1.0, None),
    (50, 80, 0.2, 1.0, None), (200, 300, 0.1, 1.2, None), (1000, 1500, 0.05, 1.0, None),
    (400, 400, 0.0, 1.0, 1), (3000, 10000, 0.02, 1.0, None), (250, 700, 0.3, 1.0, 0),
    (12000, 9000, 0.0, 1.0, None), (12000, 9000, 0.03, 1.0, None), (20000, 100, 0.0, 1.0, None),
    (20000, 100, 0.25, 1.0, None), (15000, 15000, 0.0, 1.0, None), (11000, 300, 0.1, 1.0, None),
]:
    a = rng.normal(0, 1, n1)
    b = rng.normal(shift, scale, n2)
    if rounding is not None:
        a, b = np.round(a, rounding), np.round(b, rounding)
    r = ks_2samp(a, b)
    cases.append({"evaluator": "ks", "input": {"baseline": f(a), "current": f(b)},
                  "expect": {"statistic": float(r.statistic), "p_value": float(r.pvalue)}})

# Chi-square goodness of fit against the baseline's shares.
for k, n in [(2, 100), (4, 1000), (10, 5000), (6, 37)]:
    base = rng.integers(1, 500, k)
    cur = rng.integers(0, 500, k)
    cur[0] += n
    exp = base / base.sum() * cur.sum()
    r = chisquare(cur, exp)
    cases.append({"evaluator": "chi_square", "input": {"baseline_counts": f(base), "current_counts": f(cur)},
                  "expect": {"statistic": float(r.statistic), "p_value": float(r.pvalue)}})

# Jensen-Shannon distance, natural log.
for k in [2, 5, 12]:
    p = rng.integers(0, 100, k).astype(float)
    q = rng.integers(1, 100, k).astype(float)
    cases.append({"evaluator": "jensen_shannon", "input": {"baseline_counts": f(p), "current_counts": f(q)},
                  "expect": {"distance": float(jensenshannon(p, q))}})

# Fairness: fairlearn between_groups, and disparate impact by definition.
for n, groups in [(200, ["a", "b"]), (1000, ["f", "m", "x"]), (5000, ["g1", "g2", "g3", "g4"])]:
    s = rng.choice(groups, n)
    y_true = rng.integers(0, 2, n)
    bias = {g: 0.3 + 0.1 * i for i, g in enumerate(groups)}
    y_pred = np.array([int(rng.random() < bias[g]) for g in s])
    dp = demographic_parity_difference(y_true, y_pred, sensitive_features=s)
    eo = equalized_odds_difference(y_true, y_pred, sensitive_features=s)
    rates = {g: float(y_pred[s == g].mean()) for g in groups}
    common = {"y_pred": [int(v) for v in y_pred], "sensitive": [str(v) for v in s]}
    cases.append({"evaluator": "demographic_parity", "input": common, "expect": {"difference": float(dp)}})
    cases.append({"evaluator": "equalized_odds", "input": dict(common, y_true=[int(v) for v in y_true]),
                  "expect": {"difference": float(eo)}})
    cases.append({"evaluator": "disparate_impact", "input": common,
                  "expect": {"ratio": min(rates.values()) / max(rates.values())}})

# PSI, by definition: decile bins of the baseline (numpy linear percentiles, right-closed).
for n1, n2, shift in [(1000, 800, 0.0), (5000, 5000, 0.3), (300, 2000, 1.0)]:
    a = rng.normal(0, 1, n1)
    b = rng.normal(shift, 1, n2)
    edges = np.unique(np.percentile(a, [10 * k for k in range(1, 10)]))
    ca = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1)
    cb = np.bincount(np.searchsorted(edges, b, side="left"), minlength=len(edges) + 1)
    pa = np.where(ca == 0, 1e-4, ca / ca.sum())
    pb = np.where(cb == 0, 1e-4, cb / cb.sum())
    cases.append({"evaluator": "psi", "input": {"baseline": f(a), "current": f(b)},
                  "expect": {"psi": float(np.sum((pb - pa) * np.log(pb / pa)))}})

out = {
    "generated_by": "scripts/reference/evaluators.py",
    "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "fairlearn": fairlearn.__version__},
    "tolerance": 1e-9,
    "cases": cases,
}
path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "evaluator_reference.json")
with open(path, "w") as fh:
    json.dump(out, fh, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")
