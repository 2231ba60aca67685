#!/usr/bin/env python3
"""Seeded synthetic systems for the failure modes read over decision windows (FM-02
feedback loops, FM-03 the human backstop, FM-05 integration boundaries, FM-07
consistency), and their figures, statuses and findings computed independently.

Each case is one system: its policy and risk class, its versions' decisions (the
prediction `class`, exploration, counterfactual, human review time, integration
crossing, equivalence key, validation), boundary events recorded halfway through the
last version's decisions, blind judgments and the outcomes of the judged decisions.
Every decision is drawn for blind review (rate 1), so the judged set is the fixture's.
Error events recorded before the last version's first decision (`events_before`) lie
outside every window and are never counted.

The figures are computed here with numpy and scipy over the last version's latest
WINDOW decisions (scipy.stats.entropy for the normalised entropy, numpy.percentile
with the inverted-CDF method for the nearest-rank p99), so tests/decision_modes.rs can
check the service's figures against them to 1e-9. Writes
tests/data/decision_mode_reference.json.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scipy
    /tmp/ref/bin/python scripts/reference/decision_modes.py
"""
import json
import os
from collections import defaultdict

import numpy as np
import scipy
from scipy.stats import entropy as shannon

WINDOW = 120
MIN_RECORDS = max(30, WINDOW // 4)
MIN_SUBSET = 10
N = 150  # decisions per version: the window slides past the first 30
CONTRACT = "v3"
CLASSES = ["a", "b", "c", "d"]


def over(q, limit):
    if q is None:
        return None
    return "failing" if q > limit else "at_risk" if q > limit / 2 else "ok"


def under(q, limit):
    if q is None:
        return None
    return "failing" if q < limit else "at_risk" if q < (1 + limit) / 2 else "ok"


RANK = {"ok": 0, "at_risk": 1, "failing": 2}


def counted(levels):
    levels = [l for l in levels if l is not None]
    return max(levels, key=RANK.get) if levels else "no_data"


def share(num, den):
    return num / den if den else None


def normalized_entropy(predictions):
    if not predictions:
        return None
    _, counts = np.unique(predictions, return_counts=True)
    if len(counts) == 1:
        return 0.0
    return float(shannon(counts) / np.log(len(counts)))


def rates(records):
    n = len(records)
    status = np.array([r["status"] for r in records])
    return {
        "records": n,
        "error_rate": share(int(np.sum(status == "error")), n),
        "timeout_rate": share(int(np.sum(status == "timeout")), n),
        "fallback_rate": share(int(np.sum(status == "fallback")), n),
    }


def expect(case):
    policy = case["policy"]
    versions = case["versions"]
    window = versions[-1]["decisions"][-WINDOW:]
    previous = versions[-2]["decisions"][-WINDOW:] if len(versions) > 1 else []
    in_window = {d["id"] for d in window}
    enough = len(window) >= MIN_RECORDS
    figures, status, codes = {}, {}, set()

    # FM-02
    fb = policy.get("feedback", {})
    max_drop = fb.get("max_entropy_drop", 0.2)
    min_expl = fb.get("min_exploration_share", 0.0)
    h = normalized_entropy([d["prediction"] for d in window])
    h_prev = normalized_entropy([d["prediction"] for d in previous])
    expl = share(sum(bool(d.get("exploration")) for d in window), len(window))
    cf = [d for d in window if "counterfactual" in d]
    figures["FM-02"] = {
        "normalized_entropy": h,
        "previous_version_entropy": h_prev,
        "exploration_share": expl,
        "counterfactual_disagreement": share(
            sum(d["counterfactual"] != d["prediction"] for d in cf), len(cf)),
    }
    compared = enough and len(previous) >= MIN_RECORDS
    entropy_level = over(h_prev - h, max_drop) if compared else None
    expl_level = None
    if enough and min_expl > 0:
        expl_level = "failing" if expl < min_expl else "ok"
    if entropy_level == "failing":
        codes.add("output_homogeneity")
    if expl_level == "failing":
        codes.add("exploration_below_policy")
    status["FM-02"] = counted([entropy_level, expl_level]) if enough else "no_data"

    # FM-03
    br = policy.get("blind_review", {})
    min_ms = br.get("min_review_ms", 0)
    labels = {o["id"]: o["label"] for o in case["outcomes"]}
    ai = {d["id"]: d["prediction"] for d in window}
    judged = [j for j in case["judgments"] if j["id"] in in_window]
    labelled = [j for j in judged if j["id"] in labels]
    reviews = np.array([d["review_ms"] for d in window if "review_ms" in d])
    human_accuracy = share(sum(j["judgment"] == labels[j["id"]] for j in labelled), len(labelled))
    below = share(int(np.sum(reviews < min_ms)), len(reviews))
    figures["FM-03"] = {
        "blind_agreement": share(sum(j["judgment"] == ai[j["id"]] for j in judged), len(judged)),
        "human_accuracy": human_accuracy,
        "below_min_review_share": below,
    }
    acc_level = (under(human_accuracy, br.get("min_human_accuracy", 0.8))
                 if enough and len(labelled) >= MIN_SUBSET else None)
    rev_level = (over(below, br.get("max_below_min_review_share", 0.2))
                 if enough and len(reviews) >= MIN_SUBSET and min_ms > 0 else None)
    # Open cases are seconds old when the report is read: overdue only with a limit of 0.
    open_cases = len({d["id"] for v in versions for d in v["decisions"]}) > len(case["judgments"])
    backlog_level = None
    if br.get("rate", 0) > 0:
        backlog_level = "failing" if open_cases and br.get("max_backlog_days", 14) == 0 else "ok"
    if acc_level == "failing":
        codes.add("human_accuracy_low")
    if rev_level == "failing":
        codes.add("review_time_below_minimum")
    if backlog_level == "failing":
        codes.add("blind_review_backlog")
    # Human reviews of the last 90 days: 20 or more count as evidence that oversight runs.
    human = sum("review_ms" in d for v in versions for d in v["decisions"])
    status["FM-03"] = counted([acc_level, rev_level, backlog_level, "ok" if human >= 20 else None])

    # FM-05
    ig = policy.get("integration", {})
    records = [d["integration"] for d in window if "integration" in d] + case["events"]
    r = rates(records)
    latencies = np.array([x["latency_ms"] for x in records])
    contract = ig.get("contract")
    mismatch = (share(sum(x["contract_version"] != CONTRACT for x in records), len(records))
                if contract else None)
    per_boundary = {}
    for b in sorted({f"{x['upstream']} → {x['downstream']}" for x in records}):
        per_boundary[b] = rates([x for x in records
                                 if f"{x['upstream']} → {x['downstream']}" == b])
    figures["FM-05"] = {
        "error_rate": r["error_rate"],
        "timeout_rate": r["timeout_rate"],
        "fallback_rate": r["fallback_rate"],
        "p99_latency_ms": (float(np.percentile(latencies, 99, method="inverted_cdf"))
                           if len(latencies) else None),
        "contract_mismatch_share": mismatch,
        "records": r["records"],
        "per_boundary": per_boundary,
    }
    big = r["records"] >= MIN_RECORDS
    levels = []
    if big:
        e = over(r["error_rate"], ig.get("max_error_rate", 0.02))
        t = over(r["timeout_rate"], ig.get("max_timeout_rate", 0.02))
        f = over(r["fallback_rate"], ig.get("max_fallback_rate", 0.05))
        levels += [e, t, f]
        if "failing" in (e, t):
            codes.add("integration_error_rate")
        if f == "failing":
            codes.add("fallback_rate_high")
        if mismatch is not None:
            levels.append("failing" if mismatch > 0 else "ok")
            if mismatch > 0:
                codes.add("contract_mismatch")
    if case["risk_class"] == "high" and contract is None and ("integration" in policy or records):
        codes.add("contract_undeclared")
        levels.append("at_risk")
    status["FM-05"] = counted(levels)
    case["circuit"] = ("open" if share(sum(x["status"] == "error" for x in records), len(records) or 1)
                       > ig.get("max_error_rate", 0.02) else "closed")

    # FM-07 (consistency; these systems record no confidence, so calibration has no data)
    cs = policy.get("consistency")
    groups = defaultdict(list)
    for d in window:
        if "equivalence_key" in d:
            groups[d["equivalence_key"]].append(d["prediction"])
    formed = [g for g in groups.values() if len(g) >= 2]
    inconsistency = share(sum(len(set(g)) > 1 for g in formed), len(formed))
    unvalidated = (share(sum(d.get("validated") is not True for d in window), len(window))
                   if case["risk_class"] == "high" else None)
    figures["FM-07"] = {"inconsistency_rate": inconsistency, "unvalidated_share": unvalidated}
    judged_groups = cs is not None and enough and len(formed) >= MIN_SUBSET
    inc_level = over(inconsistency, cs.get("max_inconsistency_rate", 0.05)) if judged_groups else None
    unv_level = (over(unvalidated, cs.get("max_unvalidated_share", 0.0))
                 if cs is not None and enough and unvalidated is not None else None)
    if inc_level == "failing":
        codes.add("inconsistent_answers")
    if unv_level == "failing":
        codes.add("unvalidated_outputs")
    levels = [inc_level, unv_level]
    status["FM-07"] = counted(levels)
    return {"figures": figures, "status": status, "findings": sorted(codes)}


def crossing(rng, status_p, contract_p=1.0, upstreams=("intake",)):
    st = rng.choice(["ok", "error", "timeout", "fallback"], p=status_p)
    return {
        "upstream": str(rng.choice(upstreams)),
        "downstream": "scoring",
        "contract_version": CONTRACT if rng.random() < contract_p else "v2",
        "status": str(st),
        "latency_ms": int(rng.integers(20, 400)) if st != "timeout" else 800,
    }


def version(rng, name, class_p, explore=0.0, cf_flip=None, review_ms=None,
            integration=None, groups=None, validated=None):
    """`class_p` the prediction's distribution; `review_ms(i)` a human review time (or
    None); `integration(i)` a crossing; `groups` (count, flip share) equivalence groups
    of three over the last decisions; `validated(i)` True/False/None."""
    ds = []
    preds = rng.choice(CLASSES, size=N, p=class_p)
    for i in range(N):
        d = {"id": f"{name}-{i}", "prediction": str(preds[i])}
        if rng.random() < explore:
            d["exploration"] = True
        if cf_flip is not None and i % 2 == 0:
            d["counterfactual"] = (str(rng.choice([c for c in CLASSES if c != d["prediction"]]))
                                   if rng.random() < cf_flip else d["prediction"])
        if review_ms:
            ms = review_ms(i)
            if ms is not None:
                d["review_ms"] = int(ms)
        if integration:
            d["integration"] = integration(i)
        if validated:
            v = validated(i)
            if v is not None:
                d["validated"] = v
        ds.append(d)
    if groups:
        count, flip = groups
        # Groups of three consecutive decisions near the end, inside the window.
        for g in range(count):
            members = ds[N - 3 * (g + 1):N - 3 * g]
            base = members[0]["prediction"]
            for m in members:
                m["equivalence_key"] = f"{name}-q{g}"
                m["prediction"] = base
            if rng.random() < flip:
                members[-1]["prediction"] = next(c for c in CLASSES if c != base)
    return {"version": name, "decisions": ds}


def make_cases(seed):
    rng = np.random.default_rng(seed)
    uniform = [0.25, 0.25, 0.25, 0.25]
    cases = {}
    base_policy = lambda **kw: {"outcomes": {"prediction_field": "class", "window": WINDOW}, **kw}

    def plain(name, **kw):
        return {"policy": base_policy(**kw.pop("policy", {})), "risk_class": kw.pop("risk", "limited"),
                "versions": kw.pop("versions"), "events": kw.pop("events", []),
                "events_before": kw.pop("events_before", []),
                "judgments": [], "outcomes": [], **kw}

    # FM-02: entropy across versions, exploration against the policy.
    fb = {"feedback": {"min_exploration_share": 0.05, "max_entropy_drop": 0.2}}
    cases["feedback_ok"] = plain("feedback_ok", policy=fb, versions=[
        version(rng, "1", uniform, explore=0.1),
        version(rng, "2", uniform, explore=0.12, cf_flip=0.3)])
    cases["feedback_at_risk"] = plain("feedback_at_risk", policy=fb, versions=[
        version(rng, "1", uniform, explore=0.1),
        version(rng, "2", [0.58, 0.14, 0.14, 0.14], explore=0.12, cf_flip=0.2)])
    cases["feedback_failing"] = plain("feedback_failing", policy=fb, versions=[
        version(rng, "1", uniform, explore=0.1),
        version(rng, "2", [0.85, 0.05, 0.05, 0.05], explore=0.0, cf_flip=0.6)])

    # FM-03: blind judgments (every decision drawn), their accuracy, review times.
    def backstop(name, accuracy, below, backlog_days=14):
        br = {"blind_review": {"rate": 1, "min_review_ms": 2000, "max_backlog_days": backlog_days,
                               "min_human_accuracy": 0.8, "max_below_min_review_share": 0.2}}
        v = version(rng, "1", uniform,
                    review_ms=lambda i: (rng.integers(200, 1900) if rng.random() < below
                                         else rng.integers(2000, 60000)) if i % 3 == 0 else None)
        judged = v["decisions"][-60:-20]
        judgments, outcomes = [], []
        for k, d in enumerate(judged):
            label = d["prediction"] if rng.random() < 0.7 else str(rng.choice(CLASSES))
            right = rng.random() < accuracy
            judgment = label if right else next(c for c in CLASSES if c != label)
            judgments.append({"id": d["id"], "judgment": judgment, "review_ms": int(rng.integers(5000, 90000))})
            outcomes.append({"id": d["id"], "label": label})
        c = plain(name, policy=br, versions=[v])
        c["judgments"], c["outcomes"] = judgments, outcomes
        return c

    cases["backstop_ok"] = backstop("backstop_ok", 0.97, 0.03)
    cases["backstop_at_risk"] = backstop("backstop_at_risk", 0.85, 0.03)
    cases["backstop_failing"] = backstop("backstop_failing", 0.6, 0.4, backlog_days=0)

    # FM-05: crossings at two boundaries, boundary events, the contract.
    contract = {"input_schema_sha256": "ab" * 32, "input_schema_version": CONTRACT,
                "output_schema_version": "v2", "timeout_ms": 800, "fallback": "manual review"}

    def integration(name, p, events, contract_p=1.0, declared=True, risk="high"):
        ig = {"max_error_rate": 0.02, "max_timeout_rate": 0.02, "max_fallback_rate": 0.05}
        if declared:
            ig["contract"] = contract
        v = version(rng, "1", uniform,
                    integration=lambda i: crossing(rng, p, contract_p, ("intake", "bureau")))
        evs = [crossing(rng, [0, 0.5, 0.5, 0], contract_p, ("intake", "bureau")) for _ in range(events)]
        # Recorded before the version's first decision: outside every window, never counted.
        outside = [crossing(rng, [0, 1, 0, 0], 1.0, ("intake",)) for _ in range(3)]
        return plain(name, policy={"integration": ig}, versions=[v], events=evs, risk=risk,
                     events_before=outside)

    cases["integration_ok"] = integration("integration_ok", [0.995, 0.0, 0.0, 0.005], 0)
    cases["integration_at_risk"] = integration("integration_at_risk", [0.97, 0.015, 0.0, 0.015], 1)
    cases["integration_failing"] = integration("integration_failing", [0.85, 0.06, 0.02, 0.07], 4,
                                               contract_p=0.95)
    cases["integration_undeclared"] = integration("integration_undeclared", [1.0, 0, 0, 0], 0,
                                                  declared=False)

    # FM-07: equivalent requests and validation on a high-risk system.
    def consistency(name, flip, unvalidated, limit):
        cs = {"consistency": {"max_inconsistency_rate": limit, "max_unvalidated_share": 0.02}}
        v = version(rng, "1", uniform, groups=(20, flip),
                    validated=lambda i: (None if rng.random() < unvalidated / 2 else False)
                    if rng.random() < unvalidated else True)
        return plain(name, policy=cs, versions=[v], risk="high")

    cases["consistency_ok"] = consistency("consistency_ok", 0.0, 0.0, 0.1)
    cases["consistency_at_risk"] = consistency("consistency_at_risk", 0.07, 0.0, 0.1)
    cases["consistency_failing"] = consistency("consistency_failing", 0.3, 0.1, 0.1)
    return cases


INTENDED = {
    "feedback_ok": ({"FM-02": "ok"}, []),
    "feedback_at_risk": ({"FM-02": "at_risk"}, []),
    "feedback_failing": ({"FM-02": "failing"}, ["exploration_below_policy", "output_homogeneity"]),
    "backstop_ok": ({"FM-03": "ok"}, []),
    "backstop_at_risk": ({"FM-03": "at_risk"}, []),
    "backstop_failing": ({"FM-03": "failing"},
                         ["blind_review_backlog", "human_accuracy_low", "review_time_below_minimum"]),
    "integration_ok": ({"FM-05": "ok"}, []),
    "integration_at_risk": ({"FM-05": "at_risk"}, []),
    "integration_failing": ({"FM-05": "failing"},
                            ["contract_mismatch", "fallback_rate_high", "integration_error_rate"]),
    "integration_undeclared": ({"FM-05": "at_risk"}, ["contract_undeclared"]),
    "consistency_ok": ({"FM-07": "ok"}, []),
    "consistency_at_risk": ({"FM-07": "at_risk"}, []),
    "consistency_failing": ({"FM-07": "failing"}, ["inconsistent_answers", "unvalidated_outputs"]),
}


def as_intended(name, c):
    statuses, findings = INTENDED[name]
    e = c["expect"]
    return e["findings"] == sorted(findings) and all(e["status"][k] == v for k, v in statuses.items())


# Seeds until every case shows exactly the statuses and findings its truth intends.
for seed in range(20261202, 20261202 + 2000):
    cases = make_cases(seed)
    for c in cases.values():
        c["expect"] = expect(c)
    if all(as_intended(n, c) for n, c in cases.items()):
        break
else:
    bad = [n for n, c in cases.items() if not as_intended(n, c)]
    raise SystemExit(f"no seed gives every case its intended result: {bad}")

out = {
    "generator": f"numpy {np.__version__}, scipy {scipy.__version__}, seed {seed}",
    "window": WINDOW,
    "contract_version": CONTRACT,
    "cases": cases,
}
path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "decision_mode_reference.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"seed {seed}: wrote {path}")
for name, c in cases.items():
    print(name, c["expect"]["findings"], c["expect"]["status"], c["circuit"])
