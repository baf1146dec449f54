"""Cold-start decisions of the example-similarity prior: per-code thresholds from the template's
leave-one-out scores, the best-code rule of a multi-label scheme, and the ranking mode of a
template whose examples cannot calibrate. A stand-in encoder puts each code's texts around its
own direction, so a 40-code template is built in milliseconds."""

import zlib

import numpy as np
import pytest

from coder_assist.core.template import parse_template
from coder_assist.ml.encoder import Encoder
from coder_assist.ml.suggest import THRESHOLD_SHRINK, TOP_MARGIN, ExampleSimilarityScorer, Scores, auto_threshold, decide, suggest


class ClusterEncoder(Encoder):
    """"c7 anything" lands near code 7's direction (``spread``: noise); "noise ..." anywhere."""

    model_id = "test-cluster-encoder"
    dim = 64

    def __init__(self, spread: float = 0.6, k: int = 40):
        rng = np.random.default_rng(0)
        self.centres = rng.normal(size=(k, self.dim))
        self.spread = spread

    def encode(self, texts, progress=None):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(t.encode()))
            head = t.split()[0]
            base = self.centres[int(head[1:])] if head.startswith("c") else np.zeros(self.dim)
            out[i] = base / np.linalg.norm(base) if base.any() else 0
            out[i] += self.spread * rng.normal(size=self.dim) / np.sqrt(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def template(k=40, n_examples=5, exclusive=False, examples=True, label=lambda j: f"c{j}"):
    codes = [{"name": f"Code {j}", "id": f"code{j}", "description": f"{label(j)} description",
              "examples": [f"{label(j)} example {i}" for i in range(n_examples)] if examples else []} for j in range(k)]
    return parse_template({"name": "synthetic", "codes": [{"name": "All", "exclusive": exclusive, "children": codes}]})


def passages(k=40, per=5):
    texts = [f"c{j} passage {i}" for j in range(k) for i in range(per)]
    return texts, np.repeat(np.arange(k), per)


def test_forty_code_multilabel_template_suggests_at_zero_decisions():
    # Spread 4: leave-one-out AUC about 0.73, as nhs-fft's 40 codes with 5 examples (0.74).
    enc = ClusterEncoder(spread=4.0)
    sc = ExampleSimilarityScorer().fit(template(), enc)
    texts, gold = passages()
    s = sc.score(enc.encode(texts))
    assert sc.calibrated and 0.6 < sc.loo_auc < 0.85
    assert s.thresholds is not None and s.thresholds.shape == (40,) and s.top_margin == TOP_MARGIN
    # Honest prior: confidences sit near the 1-in-40 base rate of the template's pairs ...
    assert np.median(s.confidence) < 0.1
    # ... so one threshold of 0.5, the rule the benchmark used to apply, suggests nothing,
    assert suggest(s, threshold=0.5).empty
    # while the scorer's own thresholds make decisions on (nearly) every passage, the best one
    # right four times as often as chance.
    out = suggest(s)
    assert out["segment"].nunique() >= 0.9 * len(texts)
    top = out[out["rank"] == 1].sort_values("segment")
    assert (top["code_id"].to_numpy() == np.array([f"code{j}" for j in gold])[top["segment"]]).mean() > 4 / 40
    assert out.groupby("segment").size().max() <= 3


def test_per_code_thresholds_are_shrunk_toward_the_pooled_one():
    enc = ClusterEncoder()
    few = ExampleSimilarityScorer().fit(template(k=12, n_examples=3), enc).thresholds
    many = ExampleSimilarityScorer().fit(template(k=12, n_examples=40), enc).thresholds
    # Each code's own F1-best threshold counts as n examples against THRESHOLD_SHRINK for the
    # pooled one: with 3 examples the codes stay closer together (in log-odds) than with 40.
    lo = lambda t: np.log(t / (1 - t))  # noqa: E731
    assert THRESHOLD_SHRINK > 3
    assert np.std(lo(few)) < np.std(lo(many))
    assert np.all((few > 0) & (few < 1))


def test_exclusive_codes_keep_argmax_and_the_chance_threshold():
    enc = ClusterEncoder()
    sc = ExampleSimilarityScorer().fit(template(k=6, exclusive=True), enc)
    texts, _ = passages(k=6)
    s = sc.score(enc.encode(texts))
    assert sc.calibrated
    assert s.thresholds == pytest.approx(np.full(6, auto_threshold(6)))
    top = suggest(s).query("rank == 1").sort_values("segment")
    assert list(top["code_id"]) == [s.code_ids[j] for j in s.confidence.argmax(axis=1)[top["segment"]]]


@pytest.mark.parametrize("kind", ["uninformative", "descriptions only"])
def test_a_template_that_cannot_calibrate_ranks(kind):
    enc = ClusterEncoder()
    # Uninformative: every example is noise, so a code's examples do not score it above the others.
    tpl = template(k=8, label=lambda j: "noise") if kind == "uninformative" else template(k=8, examples=False)
    sc = ExampleSimilarityScorer().fit(tpl, enc)
    assert not sc.calibrated
    texts, _ = passages(k=8)
    s = sc.score(enc.encode(texts))
    assert s.top_margin == float("inf") and s.thresholds == pytest.approx(np.full(8, auto_threshold(8)))
    # Confidences stay within a factor of 4 of the 1-in-8 base rate: they order the codes, claim nothing.
    assert np.all((s.confidence > 1 / 32) & (s.confidence < 2 / 8))
    out = suggest(s)
    # Ranking: exactly the best code of every passage is shown.
    assert out.groupby("segment").size().tolist() == [1] * len(texts)
    assert list(out.sort_values("segment")["code_id"]) == [s.code_ids[j] for j in s.confidence.argmax(axis=1)]


def test_decide_best_code_rule_threshold_override_and_top_k():
    conf = np.array([[0.04, 0.02, 0.01], [0.30, 0.25, 0.20], [0.001, 0.002, 0.0015]], dtype=np.float32)
    ev = np.full(conf.shape, "", dtype=object)
    s = Scores(["a", "b", "c"], conf, conf, ev, ev, conf, np.array([0.08, 0.1, 0.1]), 1.0)
    margin, chosen = decide(s, top_k=2)
    # Row 0: a is below 0.08 but within 1 log-odds of it (0.04 vs 0.08: 0.73): the best code shows.
    # Row 1: all three pass; top_k keeps two. Row 2: the best code is far below its threshold.
    assert chosen.tolist() == [[True, False, False], [True, True, False], [False, False, False]]
    assert margin.shape == conf.shape
    # An explicit threshold is a plain cut-off: no best-code rule.
    assert decide(s, threshold=0.05, top_k=None)[1].tolist() == [[False, False, False], [True, True, True], [False, False, False]]
    # No rule on the scores: only codes at or above their thresholds.
    s.top_margin = None
    assert decide(s, top_k=None)[1][0].tolist() == [False, False, False]
