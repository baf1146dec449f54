import json

import numpy as np
import pandas as pd
import pytest

from coder_assist.core.template import parse_template
from coder_assist.core.errors import ProjectError
from coder_assist.app.training import load_model_version, rollback, train_project
from coder_assist.ml.classifier import LearnedScorer
from coder_assist.ml.features import Featurizer, labels_from_decisions
from coder_assist.ml.query import query_order, uncertainty_diversity
from coder_assist.app.pipeline import import_files, init_project, suggest_project
from coder_assist.ml.suggest import Inputs

TPL = parse_template({"name": "toy", "codes": [
    {"name": "Kind", "description": "kinds", "exclusive": True, "children": [
        {"name": "Money", "description": "Funding, budgets, paying for things.", "examples": ["There is no budget.", "The grant ran out."]},
        {"name": "Time", "description": "Not enough time, deadlines.", "examples": ["No hours in the week.", "Deadlines are impossible."]},
        {"name": "Other", "description": "Anything else.", "examples": ["Nice weather today."]},
    ]},
    {"name": "Tone", "description": "free", "children": [{"name": "Complaint", "description": "Complaining."}]},
]})


def dec(rows):
    return pd.DataFrame(rows, columns=["id", "segment_id", "code_id", "action"])


def _labels_one_at_a_time(decisions, template):
    """The labelling rule written as a loop over the decisions, oldest first."""
    rows = []
    for r in decisions[decisions["action"].isin(["accept", "reject"])].sort_values("id").itertuples(index=False):
        if r.code_id not in template.codes:
            continue
        if r.action == "accept":
            rows.append((r.segment_id, r.code_id, 1, "accept", r.id))
            rows += [(r.segment_id, s, 0, "exclusive", r.id) for s in template.exclusive_siblings(r.code_id)]
        else:
            rows.append((r.segment_id, r.code_id, 0, "reject", r.id))
    out = pd.DataFrame(rows, columns=["segment_id", "code_id", "label", "source", "order"])
    out["direct"] = out["source"] != "exclusive"
    out = out.sort_values(["direct", "order"], kind="stable").drop_duplicates(["segment_id", "code_id"], keep="last")
    return out.drop(columns=["order", "direct"]).reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_are_the_rule_applied_one_decision_at_a_time(seed):
    """Random accepts, rejects and skips (and a code no longer in the template), a few a passage,
    so exclusive siblings, repeats and later decisions collide: the same rows, in the same order
    (a code's classifier samples and folds its rows in that order)."""
    rng = np.random.default_rng(seed)
    codes = ["kind/money", "kind/time", "kind/other", "tone/complaint", "gone/code"]
    n = 400
    d = dec([(int(i), int(rng.integers(150)), codes[int(rng.integers(len(codes)))], ["accept", "reject", "skip"][int(rng.integers(3))])
             for i in rng.permutation(np.arange(1, n + 1))])
    got, want = labels_from_decisions(d, TPL), _labels_one_at_a_time(d, TPL)
    assert (got["source"] == "exclusive").any() and len(got) > 20
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_labels_partial_exclusive_latest_wins():
    d = dec([
        (1, 10, "kind/money", "accept"),
        (2, 11, "kind/time", "reject"),
        (3, 12, "tone/complaint", "skip"),
        (4, 13, "tone/complaint", "accept"),
        (5, 14, "kind/time", "accept"),
        (6, 14, "kind/money", "accept"),  # later accept of a sibling: money wins, time becomes negative
    ])
    lab = labels_from_decisions(d, TPL).set_index(["segment_id", "code_id"])["label"].to_dict()
    assert lab[(10, "kind/money")] == 1
    assert lab[(10, "kind/time")] == 0 and lab[(10, "kind/other")] == 0  # exclusivity
    assert lab[(11, "kind/time")] == 0
    assert (11, "kind/money") not in lab  # a reject says nothing about other codes
    assert (12, "tone/complaint") not in lab  # skips are no label
    assert lab[(13, "tone/complaint")] == 1
    assert not any(k[0] == 13 and k[1].startswith("kind/") for k in lab)  # non-exclusive: no implied negatives
    assert lab[(14, "kind/money")] == 1
    # The direct accept of time on 14 was superseded by the later exclusive accept of money:
    # the implied negative does not override a direct decision.
    assert lab[(14, "kind/time")] == 1


MONEY = ["The budget was cut again this year.", "We could not pay for the venue.", "Funding ended in March.", "No money for expenses.",
         "The grant did not cover staff.", "Costs went up and cash went down.", "They froze the budget.", "We begged for a small grant."]
TIME = ["I had no hours left in the week.", "The deadline was Friday.", "Everything is rushed.", "We never have enough time.",
        "The timetable was impossible.", "My diary is full for months.", "We ran out of time for meetings.", "Too many deadlines at once."]


def corpus_inputs(encoder, texts):
    X = encoder.encode(texts)
    return Inputs(X=X, texts=texts, X_prev=np.zeros_like(X), prev_texts=[""] * len(texts))


@pytest.fixture
def trained(encoder):
    texts = MONEY + TIME
    inputs = corpus_inputs(encoder, texts)
    rows = [(i, i, "kind/money", "accept") for i in range(8)] + [(8 + i, 8 + i, "kind/money", "reject") for i in range(8)]
    labels = labels_from_decisions(dec(rows), TPL)
    sc = LearnedScorer(features="emb+prev+ngrams", cv_folds=3).fit(TPL, encoder)
    sc.fit_labels(inputs, labels, row_of={i: i for i in range(len(texts))})
    return sc, inputs


def test_classifier_learns_and_reports(trained):
    sc, inputs = trained
    assert "kind/money" in sc.coef
    # Time has negatives (implied by exclusivity) but no decided positive: the prior serves it.
    assert "kind/time" not in sc.coef and sc.reports["kind/time"].n_neg == 8
    rep = sc.reports["kind/money"]
    assert (rep.n_pos, rep.n_neg) == (8, 8)
    assert rep.weight in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert rep.f1 is not None and rep.verdict in ("reliable", "needs more decisions")
    assert "tone/complaint" not in sc.coef  # no labels: the prior serves
    s = sc.score(inputs)
    j = s.code_ids.index("kind/money")
    assert s.confidence[:8, j].mean() > s.confidence[8:, j].mean() + 0.2
    assert np.all((s.confidence > 0) & (s.confidence < 1))
    assert s.evidence_text[0, j]  # evidence still comes from the template's examples


def test_save_load_round_trip(trained, tmp_path, encoder):
    sc, inputs = trained
    sc.save(tmp_path)
    again = LearnedScorer.load(tmp_path, TPL, encoder)
    np.testing.assert_allclose(again.score(inputs).confidence, sc.score(inputs).confidence, atol=1e-5)
    assert json.loads((tmp_path / "model.json").read_text())["features"] == "emb+prev+ngrams"


def test_tampered_model_file_is_refused(trained, tmp_path, encoder):
    sc, _ = trained
    sc.save(tmp_path)
    # An npz holding a pickled object array (what an attacker would use to run code on load).
    np.savez(tmp_path / "weights.npz", idf__word=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ProjectError, match="refusing"):
        LearnedScorer.load(tmp_path, TPL, encoder)
    (tmp_path / "weights.npz").write_bytes(b"not a zip")
    with pytest.raises(ProjectError, match="refusing"):
        LearnedScorer.load(tmp_path, TPL, encoder)


def test_featurizer_blocks():
    X = np.eye(3, 4, dtype=np.float32)
    inp = Inputs(X=X, texts=["yes", "no way", "yes?"], X_prev=X, prev_texts=["ok", "", "why"])
    f = Featurizer("emb+prev+ngrams", n_hash=2**10).fit(inp)
    M = f.transform(inp)
    assert M.shape == (3, 4 + 4 + 3 * 2**10)
    assert Featurizer("emb").fit(inp).transform(inp).shape == (3, 4)
    assert Featurizer("emb+prev").fit(inp).transform(inp).shape == (3, 8)
    # emb+ngrams: the same embedding and n-gram blocks (the previous turn's words included),
    # only the previous turn's embedding left out.
    N = Featurizer("emb+ngrams", n_hash=2**10).fit(inp).transform(inp)
    assert N.shape == (3, 4 + 3 * 2**10)
    np.testing.assert_array_equal(N.toarray(), np.hstack([M[:, :4].toarray(), M[:, 8:].toarray()]))
    assert N[:, 4 + 2 * 2**10 :].nnz > 0  # the previous turn's words
    f.fit(inp)
    M.sort_indices()
    cut = f.without_prev_embedding(M, 4)  # what the codes' classifiers learn from beside a matcher
    assert cut.shape == M.shape and cut.has_sorted_indices
    expected = M.toarray()
    expected[:, 4:8] = 0
    np.testing.assert_array_equal(cut.toarray(), expected)
    assert cut.nnz == M.nnz - np.count_nonzero(M[:, 4:8].toarray())
    assert Featurizer("emb+ngrams").without_prev_embedding(N, 4) is N


def test_uncertainty_diversity_prefers_uncertain_and_distinct():
    conf = np.array([[0.5, 0.1], [0.5, 0.1], [0.55, 0.1], [0.99, 0.0], [0.6, 0.1]])
    X = np.array([[1, 0], [1, 0], [0, 1], [0.7, 0.7], [0.6, 0.8]], dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    pick = uncertainty_diversity(conf, X, 2, explore=0.0)
    assert len(set(pick.tolist())) == 2
    assert 3 not in pick  # the confident one is not asked
    assert not {0, 1} <= set(pick.tolist())  # never two identical passages in one batch
    mixed = uncertainty_diversity(conf, X, 4, explore=0.5, seed=1)
    assert len(set(mixed.tolist())) == 4  # half uncertain, half random, no repeats


def test_train_project_versions_and_rollback(tmp_path, encoder):
    (tmp_path / "in").mkdir()
    lines = "".join(f"Interviewer: Q{i}?\nP1: {m} {t}\n" for i, (m, t) in enumerate(zip(MONEY, TIME)))
    (tmp_path / "in" / "a.txt").write_text(lines, encoding="utf-8")
    p = init_project(tmp_path / "proj", TPL)
    from coder_assist.core.segment import Segmenter  # noqa: F401  (project default: windows)

    import_files(p, [tmp_path / "in" / "a.txt"])
    mv1 = suggest_project(p, encoder=encoder)
    segs = p.segments()
    for i, sid in enumerate(segs.id):
        p.record_decision(int(sid), "kind/money", "accept" if i % 2 == 0 else "reject", "ann")
    mv2 = train_project(p, encoder)
    assert mv2 > mv1 and p.latest_model_version() == mv2
    folder = p.folder / "models" / f"v{mv2}"
    assert {f.name for f in folder.iterdir()} == {"weights.npz", "model.json", "card.json", "card.txt", "queue.npy"}
    card = json.loads((folder / "card.json").read_text())
    assert card["n_decisions"] == len(segs) and card["encoder"] == encoder.model_id
    assert "kind/money" in (folder / "card.txt").read_text() or "Money" in (folder / "card.txt").read_text()
    assert set(p.suggestions().model_version_id) <= {mv2}
    # A second retrain in the same process hashes no passage's n-grams again, and scores as
    # the one that hashed them all.
    from coder_assist.app import training

    conf2 = p.suggestions().sort_values(["segment_id", "code_id"])["confidence"].to_numpy()
    train_project(p, encoder)
    assert training._project_cache(p.folder).ngrams.hashed_last == 0
    # (to 1e-4: codes fitted in threads agree to about 1e-6 from run to run, see LearnedScorer.n_jobs)
    assert np.allclose(p.suggestions().sort_values(["segment_id", "code_id"])["confidence"].to_numpy(), conf2, atol=1e-4)
    rollback(p, mv2)
    load_model_version(p, mv2, encoder)
    rollback(p, mv1)
    assert p.latest_model_version() == mv1 and set(p.suggestions().model_version_id) == {mv1}
    with pytest.raises(ProjectError):
        rollback(p, 999)


def test_failed_save_leaves_no_version(tmp_path, encoder, monkeypatch):
    (tmp_path / "a.txt").write_text("Interviewer: Q?\nP1: The budget was cut.\n", encoding="utf-8")
    p = init_project(tmp_path / "proj", TPL)
    import_files(p, [tmp_path / "a.txt"])
    before = len(p.model_versions())

    def boom(self, folder):
        (folder / "weights.npz").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(LearnedScorer, "save", boom)
    with pytest.raises(ProjectError, match="disk full"):  # says where, not a traceback
        train_project(p, encoder)
    assert len(p.model_versions()) == before
    assert not any((p.folder / "models").iterdir())


def test_not_automatable_when_curve_flattens_below_target():
    from coder_assist.ml.classifier import CodeReport, apply_history

    def card(n, f1):
        return {"codes": [{"code_id": "c", "n_pos": n // 2, "n_neg": n - n // 2, "f1": f1}]}

    flat = {"c": CodeReport("c", 60, 60, 1.0, 0.5, 0.5, 0.50)}
    apply_history(flat, [card(40, 0.49), card(80, 0.50)], target=0.7)
    assert flat["c"].verdict == "not automatable"
    rising = {"c": CodeReport("c", 60, 60, 1.0, 0.6, 0.6, 0.60)}
    apply_history(rising, [card(40, 0.40), card(80, 0.50)], target=0.7)
    assert rising["c"].verdict == "needs more decisions"
    young = {"c": CodeReport("c", 10, 10, 1.0, 0.5, 0.5, 0.50)}
    apply_history(young, [card(18, 0.5)], target=0.7)  # too little history to judge
    assert young["c"].verdict == "needs more decisions"


def test_consistency_check_flags_a_miscoding(tmp_path, encoder):
    from coder_assist.app.training import consistency_check

    lines = "".join(f"Interviewer: Q{i}?\nP1: {t}\n" for i, t in enumerate(MONEY + TIME))
    (tmp_path / "a.txt").write_text(lines, encoding="utf-8")
    p = init_project(tmp_path / "proj", TPL)
    from coder_assist.app.pipeline import project_segmenter  # noqa: F401

    import_files(p, [tmp_path / "a.txt"])
    segs = p.segments()
    by_text = dict(zip(segs.text, segs.id.astype(int)))
    for t in MONEY[:6]:
        p.record_decision(by_text[t], "kind/money", "accept", "ann")
    for t in TIME[:5]:
        p.record_decision(by_text[t], "kind/time", "accept", "ann")
    p.record_decision(by_text[TIME[6]], "kind/money", "accept", "bob")  # a time passage coded as money
    flagged = consistency_check(p, encoder)
    assert TIME[6] in flagged.text.tolist()
    row = flagged[flagged.text == TIME[6]].iloc[0]
    assert row.flag == "closer to another code" and row.nearest_other.endswith("Time") and row.coder == "bob"
    assert not set(MONEY[:6]) & set(flagged.text)


def test_verdicts_cold_start_then_stale_after_template_edit(tmp_path, encoder):
    p = init_project(tmp_path / "proj", TPL)
    assert set(p.verdicts().values()) == {"cold start"}
    from coder_assist.core.template import parse_template as parse

    d = TPL.to_dict()
    d["codes"][0]["children"][0]["description"] = "Money, redefined."
    p.set_template(parse(d))
    v = p.verdicts()
    assert v["kind/money"] == "stale" and v["kind/time"] == "cold start"


def test_orphan_folder_from_a_crash_does_not_block_training(tmp_path, encoder):
    (tmp_path / "a.txt").write_text("Interviewer: Q?\nP1: The budget was cut.\n", encoding="utf-8")
    p = init_project(tmp_path / "proj", TPL)
    import_files(p, [tmp_path / "a.txt"])
    next_id = int(p.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM model_versions").fetchone()[0])
    orphan = p.folder / "models" / f"v{next_id}"
    orphan.mkdir(parents=True)
    (orphan / "weights.npz").write_bytes(b"half-written")
    # Leftovers of killed saves: an old one is swept, a recent one (maybe in progress) is kept.
    import os
    import time

    old_tmp, new_tmp = p.folder / "models" / ".tmp-old", p.folder / "models" / ".tmp-new"
    old_tmp.mkdir(), new_tmp.mkdir()
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    mv = train_project(p, encoder)
    assert mv == next_id
    assert (orphan / "model.json").exists() and (orphan / "weights.npz").read_bytes() != b"half-written"
    assert not old_tmp.exists() and new_tmp.exists()


def test_query_order_is_a_permutation_led_by_the_strategy():
    rng = np.random.default_rng(0)
    conf = np.clip(np.array([0.9, 0.05, 0.05]) + rng.normal(0, 0.02, (50, 3)), 0, 1)
    conf[:10] = [0.5, 0.49, 0.0]  # ten coin flips between two codes
    X = rng.normal(size=(50, 4)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    order = query_order(conf, X, head=2, explore=0.0)
    assert sorted(order.tolist()) == list(range(50))
    assert set(order[:2].tolist()) <= set(range(10))  # the head is the uncertain ones
    assert np.array_equal(order, query_order(conf, X, head=2, explore=0.0))  # deterministic
    rest = order[2:]
    from coder_assist.ml.query import uncertainty

    u = uncertainty(conf[rest])
    assert np.all(np.diff(u) <= 1e-12)  # then least sure first


def _trained_project(tmp_path, encoder):
    (tmp_path / "in").mkdir()
    lines = "".join(f"Interviewer: Q{i}?\nP1: {m}\nInterviewer: And?\nP1: {t}\n" for i, (m, t) in enumerate(zip(MONEY, TIME)))
    (tmp_path / "in" / "a.txt").write_text(lines, encoding="utf-8")
    p = init_project(tmp_path / "proj", TPL)
    import_files(p, [tmp_path / "in" / "a.txt"])
    suggest_project(p, encoder=encoder)
    for sid, text in zip(p.segments().id, p.segments().text):
        p.record_decision(int(sid), "kind/money", "accept" if text in MONEY else "reject", "ann")
    return p, train_project(p, encoder)


def test_review_queue_uncertain_follows_the_saved_query_order(tmp_path, encoder):
    from coder_assist.app import review

    p, mv = _trained_project(tmp_path, encoder)
    saved = np.load(p.folder / "models" / f"v{mv}" / "queue.npy", allow_pickle=False)
    assert sorted(saved.tolist()) == sorted(p.segments().id.tolist())
    queue = review.review_queue(p, "new-coder", "uncertain")
    assert len(queue) == len(p.suggestions())
    place = {int(s): i for i, s in enumerate(saved)}
    got = [place[int(s)] for s in queue["segment_id"]]
    assert got == sorted(got)  # segments in the saved order
    # The app's fast path gives the same first suggestion as the reference queue.
    first = review.next_suggestion(p, "new-coder", "uncertain")
    assert first["suggestion_id"] == queue.iloc[0]["suggestion_id"]
    # Every segment at the head of the order can be asked about, even below every threshold.
    head = saved[: min(len(saved), 200)]
    assert set(head.tolist()) <= set(p.suggestions().segment_id.tolist())


def test_damaged_queue_file_falls_back_to_median_order(tmp_path, encoder):
    from coder_assist.app import review

    p, mv = _trained_project(tmp_path, encoder)
    (p.folder / "models" / f"v{mv}" / "queue.npy").write_bytes(b"not an array")
    queue = review.review_queue(p, "x", "uncertain")
    med = review.pool_stats(p).median
    d = (queue["confidence"] - med).abs().tolist()
    assert d == sorted(d)


def test_suggest_after_training_uses_the_learned_model_for_new_transcripts(tmp_path, encoder):
    from coder_assist.app.modelview import learning_curve

    p, mv = _trained_project(tmp_path, encoder)
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "b.txt").write_text("Interviewer: Money?\nP2: The grant was cut and we could not pay staff.\n", encoding="utf-8")
    import_files(p, [tmp_path / "in2" / "b.txt"])
    mv2 = suggest_project(p, encoder=encoder)
    kinds = dict(p.model_versions()[["id", "kind"]].itertuples(index=False))
    assert mv2 > mv and kinds[mv2] == "learned"
    card = json.loads((p.folder / "models" / f"v{mv2}" / "card.json").read_text())
    assert card["rescored_from"] == mv
    new_seg = p.segments().query("transcript == 'b'").id.tolist()
    sugg = p.suggestions(mv2)
    assert set(new_seg) <= set(sugg.segment_id)
    # Same weights: the old transcript's confidences are unchanged.
    old = p.suggestions(mv).set_index(["segment_id", "code_id"]).confidence
    new = sugg.set_index(["segment_id", "code_id"]).confidence
    common = old.index.intersection(new.index)
    assert len(common) and np.allclose(old[common], new[common], atol=1e-5)
    assert learning_curve(p)["version"].tolist() == [mv]  # a rescore is not a new point


def test_fit_transform_equals_fit_then_transform(encoder):
    texts = MONEY + TIME
    inputs = corpus_inputs(encoder, texts)
    a = Featurizer().fit_transform(inputs)
    f = Featurizer().fit(inputs)
    b = f.transform(inputs)
    assert a.shape == b.shape and abs(a - b).max() < 1e-6


def test_query_strategies_by_name():
    from coder_assist.ml.query import STRATEGIES, LeastConfident, QueryStrategy, strategy

    conf = np.array([[0.5, 0.45], [0.9, 0.05], [0.6, 0.3], [0.34, 0.33]])
    X = np.eye(4, dtype=np.float32)
    assert set(STRATEGIES) == {"random", "uncertainty", "uncertainty_diversity"}
    assert all(isinstance(strategy(n), QueryStrategy) for n in STRATEGIES)
    assert LeastConfident().query(conf, X, 2).tolist() == [3, 0]  # smallest top-2 margins first
    assert strategy("uncertainty_diversity", explore=0.0).query(conf, X, 2).tolist() == uncertainty_diversity(conf, X, 2, explore=0.0).tolist()
    # A random strategy is reproducible from its seed (simulate's random-order baseline).
    a, b = strategy("random", seed=3), strategy("random", seed=3)
    first = a.query(conf, X, 2)
    assert first.tolist() == b.query(conf, X, 2).tolist() and len(set(first.tolist())) == 2
    with pytest.raises(ValueError, match="unknown query strategy"):
        strategy("most_likely")
