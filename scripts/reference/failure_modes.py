#!/usr/bin/env python3
"""Seeded synthetic AI systems whose truth is known, and their failure-mode figures.

Each case is a system's life: versions deployed one after another, each with its
decisions (confidence, the prediction, proxy metrics), its outcomes in the order they
are recorded (label, business metrics), corrections and overturned contests. The
figures of the last version's windows are computed here with numpy and scikit-learn
(accuracy_score, brier_score_loss; numpy.corrcoef for Pearson's r; the expected
calibration error by its definition), from the values as sent, so tests/failure_modes.rs
can check the service's incremental integer sums against them to 1e-9. The statuses and
finding codes follow the rules of the failure-mode report, computed here again.

Writes tests/data/failure_mode_reference.json.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scikit-learn
    /tmp/ref/bin/python scripts/reference/failure_modes.py
"""
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, brier_score_loss

WINDOW = 200
LIMITS = {
    "max_accuracy_drop": 0.05, "max_confidence_shift": 0.02, "max_ece": 0.1,
    "max_high_confidence_wrong_share": 0.05, "min_proxy_correlation": 0.3,
    "min_outcome_coverage": 0.5, "max_overturned_share": 0.02,
}
MIN_RECORDS = max(30, WINDOW // 4)


def r4(x):
    return [round(float(v), 4) for v in x]


def version(rng, name, n, conf, correct_p, proxy=None, business=None, labelled=1.0,
            order=None):
    """One version's decisions and outcomes. `conf` draws confidences, `correct_p(i, c)`
    the chance decision i is right, `proxy(i)`/`business(i, proxy)` its metrics."""
    c = r4(conf(n))
    predictions = [bool(v) for v in rng.integers(0, 2, n)]
    decisions = []
    outcomes = []
    for i in range(n):
        d = {"id": f"{name}-{i}", "confidence": c[i], "prediction": predictions[i]}
        p = proxy(i) if proxy else None
        if p is not None:
            d["proxy"] = p
        decisions.append(d)
        if rng.random() >= labelled:
            continue
        right = bool(rng.random() < correct_p(i, c[i]))
        o = {"id": d["id"], "label": predictions[i] if right else not predictions[i]}
        if business:
            o["business"] = business(i, p)
        outcomes.append(o)
    if order == "shuffle-tail":
        # Outcomes arrive out of decision order (the last 50 reversed).
        outcomes[-50:] = outcomes[-50:][::-1]
    return {"version": name, "decisions": decisions, "outcomes": outcomes,
            "corrections": [], "overturned": []}


def windows(v):
    """Positions in first-outcome order; corrections replace; overturned count wrong."""
    by_id = {d["id"]: d for d in v["decisions"]}
    order, label, business = [], {}, {}
    for o in v["outcomes"]:
        if o["id"] not in label:
            order.append(o["id"])
        label[o["id"]] = o["label"]
        business[o["id"]] = o.get("business", {})
    for o in v["corrections"]:
        label[o["id"]] = o["label"]
        business[o["id"]] = o.get("business", {})
    overturned = set(v["overturned"])
    rows = []
    for i in order:
        d = by_id[i]
        correct = (label[i] == d["prediction"]) and i not in overturned
        rows.append({"id": i, "confidence": d["confidence"], "correct": correct,
                     "overturned": i in overturned, "proxy": d.get("proxy", {}),
                     "business": business[i]})
    return rows[-WINDOW:], rows[:WINDOW]


def figures(rows):
    conf = np.array([r["confidence"] for r in rows])
    correct = np.array([r["correct"] for r in rows], dtype=int)
    n = len(rows)
    # Bins by the first decimal of the confidence as sent (4 places): min(floor(10c), 9).
    bins = np.minimum(np.round(conf * 10000).astype(int) // 1000, 9)
    ece = sum(
        (np.sum(bins == b) / n) * abs(correct[bins == b].mean() - conf[bins == b].mean())
        for b in range(10) if np.any(bins == b)
    )
    corr = {}
    for p in sorted({k for r in rows for k in r["proxy"]}):
        for b in sorted({k for r in rows for k in r["business"]}):
            pairs = [(r["proxy"][p], r["business"][b]) for r in rows
                     if p in r["proxy"] and b in r["business"]]
            x = np.array([a for a, _ in pairs])
            y = np.array([c for _, c in pairs])
            # A pair's r counts once the window holds enough records carrying both.
            r = (float(np.corrcoef(x, y)[0, 1])
                 if len(pairs) >= MIN_RECORDS and x.std() > 0 and y.std() > 0 else None)
            corr.setdefault(p, {})[b] = r
    means = lambda key: {
        k: float(np.mean([r[key][k] for r in rows if k in r[key]]))
        for k in sorted({k for r in rows for k in r[key]})
    }
    return {
        "n": n,
        "accuracy": float(accuracy_score(np.ones(n, dtype=int), correct)),
        "mean_confidence": float(conf.mean()),
        "ece": float(ece),
        "brier": float(brier_score_loss(correct, conf)),
        "high_confidence_wrong_share": float(np.sum((conf >= 0.9) & (correct == 0)) / n),
        "overturned_share": float(sum(r["overturned"] for r in rows) / n),
        "proxy_correlation": corr,
        "proxy_means": means("proxy"),
        "business_means": means("business"),
    }


def over(q, limit):
    if q is None:
        return "ok"
    return "failing" if q > limit else "at_risk" if q > limit / 2 else "ok"


def under(q, limit):
    if q is None:
        return "ok"
    return "failing" if q < limit else "at_risk" if q < (1 + limit) / 2 else "ok"


RANK = {"ok": 0, "at_risk": 1, "failing": 2}


def worst(levels):
    return max(levels, key=RANK.get)


def expect(case):
    versions = case["versions"]
    v = versions[-1]
    cur_rows, base_rows = windows(v)
    decisions = len(v["decisions"])
    labelled = len({o["id"] for o in v["outcomes"]})
    coverage = labelled / decisions if decisions else None
    codes = set()
    statuses = {}
    out = {"coverage": coverage}
    # Coverage is judged on the version's decisions, labelled or not.
    judged = decisions >= MIN_RECORDS
    coverage_levels = [under(coverage, LIMITS["min_outcome_coverage"])] if judged else []
    if len(cur_rows) >= MIN_RECORDS and len(base_rows) >= MIN_RECORDS:
        cur, base = figures(cur_rows), figures(base_rows)
        drop = base["accuracy"] - cur["accuracy"]
        shift = abs(cur["mean_confidence"] - base["mean_confidence"])
        decays = drop > LIMITS["max_accuracy_drop"] and shift < LIMITS["max_confidence_shift"]
        if decays:
            codes.add("accuracy_decay")
        if cur["overturned_share"] > LIMITS["max_overturned_share"]:
            codes.add("contest_rate_high")
        acc = "failing" if decays else "at_risk" if drop > LIMITS["max_accuracy_drop"] / 2 else "ok"
        statuses["FM-01"] = worst([acc, over(cur["overturned_share"], LIMITS["max_overturned_share"])]
                                  + coverage_levels)
        levels = [over(cur["ece"], LIMITS["max_ece"]),
                  over(cur["high_confidence_wrong_share"], LIMITS["max_high_confidence_wrong_share"])]
        if "failing" in levels:
            codes.add("overconfidence")
        statuses["FM-07"] = worst(levels)
        rs = [r for bs in cur["proxy_correlation"].values() for r in bs.values() if r is not None]
        divergence = False
        if len(versions) > 1:
            prev, _ = windows(versions[-2])
            pf = figures(prev)
            common = [k for k in cur["proxy_means"] if k in pf["proxy_means"]]
            rose = bool(common) and all(cur["proxy_means"][k] > pf["proxy_means"][k] for k in common)
            fell = any(cur["business_means"][k] < pf["business_means"][k]
                       for k in cur["business_means"] if k in pf["business_means"])
            divergence = rose and fell
        if any(r < LIMITS["min_proxy_correlation"] for r in rs) or divergence:
            codes.add("proxy_outcome_divergence")
        if not rs and not divergence:
            statuses["FM-04"] = "no_data"
        elif divergence:
            statuses["FM-04"] = "failing"
        else:
            statuses["FM-04"] = worst([under(r, LIMITS["min_proxy_correlation"]) for r in rs])
        out.update({"current": cur, "baseline": base})
    else:
        statuses.update({"FM-01": worst(coverage_levels) if coverage_levels else "no_data",
                         "FM-04": "no_data", "FM-07": "no_data"})
    if judged and coverage is not None and coverage < LIMITS["min_outcome_coverage"]:
        codes.add("outcome_coverage_low")
    out["findings"] = sorted(codes)
    out["status"] = statuses
    return out


def calibrated(rng):
    return lambda i, c: c


def make_cases(seed):
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: (lambda n: rng.uniform(lo, hi, n))
    cases = {}

    # A model that stays accurate and calibrated; its proxy tracks the business metric.
    stable = version(
        rng, "1", 400, u(0.6, 0.99), calibrated(rng),
        proxy=lambda i: {"click_probability": round(float(rng.uniform(0.2, 0.8)), 4)},
        business=lambda i, p: {"revenue": round(100 + 120 * (p["click_probability"] - 0.5) + float(rng.normal(0, 6)), 2)},
        labelled=0.9, order="shuffle-tail")
    tail = [o["id"] for o in stable["outcomes"][-40:]]
    stable["corrections"] = [
        {"id": i, "label": not next(o["label"] for o in stable["outcomes"] if o["id"] == i),
         "business": next(o["business"] for o in stable["outcomes"] if o["id"] == i)}
        for i in tail[:2]
    ]
    stable["overturned"] = tail[5:6]
    cases["stable"] = {"versions": [stable], "intended": []}

    # Accuracy falls while confidence stays: the last window's confidences are the
    # baseline's, shuffled.
    base_conf = r4(rng.uniform(0.6, 0.99, 200))
    mid_conf = r4(rng.uniform(0.6, 0.99, 200))
    tail_conf = list(rng.permutation(base_conf))
    confs = np.array(base_conf + mid_conf + [float(c) for c in tail_conf])
    decay = version(rng, "1", 600, lambda n: confs, lambda i, c: c if i < 400 else c - 0.3)
    cases["decay"] = {"versions": [decay], "intended": ["accuracy_decay", "overconfidence"]}

    # Confident and often wrong from the start.
    cases["miscalibrated"] = {"versions": [
        version(rng, "1", 300, u(0.9, 0.99), lambda i, c: 0.7)], "intended": ["overconfidence"]}

    # The proxy rises across versions while the business metric falls.
    def proxy_version(name, mean, base, slope, noise):
        return version(
            rng, name, 300, u(0.6, 0.99), calibrated(rng),
            proxy=lambda i: {"click_probability": round(float(rng.normal(mean, 0.08)), 4)},
            business=lambda i, p: {"revenue": round(base + slope * (p["click_probability"] - mean) + float(rng.normal(0, noise)), 2)})
    cases["proxy"] = {"versions": [proxy_version("1", 0.5, 100, 150, 4), proxy_version("2", 0.7, 80, 150, 4)],
                      "intended": ["proxy_outcome_divergence"]}

    # Overturned contests above the limit.
    contested = version(rng, "1", 300, u(0.6, 0.99), calibrated(rng))
    contested["overturned"] = [o["id"] for o in contested["outcomes"][-200:][::25]]
    cases["contested"] = {"versions": [contested], "intended": ["contest_rate_high"]}

    # No ground truth arrives.
    cases["blind"] = {"versions": [version(rng, "1", 120, u(0.6, 0.99), calibrated(rng), labelled=0.0)],
                      "intended": ["outcome_coverage_low"]}
    return cases


# Seeds until every case shows exactly the findings its truth intends.
for seed in range(20261202, 20261202 + 500):
    cases = make_cases(seed)
    for c in cases.values():
        c["expect"] = expect(c)
    if all(c["expect"]["findings"] == sorted(c["intended"]) for c in cases.values()):
        break
else:
    raise SystemExit("no seed gives every case its intended findings")

out = {
    "generator": f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, seed {seed}",
    "window": WINDOW,
    "cases": cases,
}
path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "failure_mode_reference.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"seed {seed}: wrote {path}")
for name, c in cases.items():
    print(name, c["expect"]["findings"], c["expect"]["status"])
