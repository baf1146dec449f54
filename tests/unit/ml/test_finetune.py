import numpy as np
import pandas as pd
import pytest

from coder_assist.ml.embed import SentenceTransformerEncoder
from coder_assist.core.errors import ModelError
from coder_assist.ml.finetune import FinetuneConfig, contrastive_finetune, decision_labels, make_pairs


def test_pairs_respect_partial_labels():
    labels = pd.DataFrame(
        [(0, "a", 1), (1, "a", 1), (2, "a", 1), (3, "b", 1), (4, "b", 1), (5, "a", 0), (6, "a", 1), (6, "b", 1)],
        columns=["item", "code", "label"],
    )
    pairs = make_pairs(labels, 60, seed=1)
    assert pairs and len(pairs) == len({(min(i, j), max(i, j)) for i, j, _ in pairs})  # no repeats
    carries = labels[labels.label == 1].groupby("item")["code"].agg(set).to_dict()
    for i, j, t in pairs:
        assert i != j
        ci, cj = carries.get(i, set()), carries.get(j, set())
        if t == 1.0:
            assert ci & cj  # similar only when they share an accepted code
        elif 5 in (i, j):
            assert "a" in (cj if i == 5 else ci)  # the reject of a is set against an accept of a
        else:
            assert not (ci & cj)  # dissimilar: accepted codes that do not overlap
    # Item 6 carries both codes: it is never a "different code" partner of a or b.
    assert not any(t == 0.0 and 6 in (i, j) and 5 not in (i, j) for i, j, t in pairs)
    assert {t for *_, t in pairs} == {0.0, 1.0}


def test_decision_labels_keep_only_accept_and_reject():
    d = pd.DataFrame({"segment_id": [10, 11, 12, 99], "code_id": ["a", "a", "b", "a"], "action": ["accept", "reject", "skip", "accept"]})
    lab = decision_labels(d, {10: 0, 11: 1, 12: 2})
    assert lab.to_dict("records") == [{"item": 0, "code": "a", "label": 1}, {"item": 1, "code": "a", "label": 0}]


def test_too_few_pairs_is_a_clear_error(tmp_path):
    labels = pd.DataFrame([(0, "a", 1), (1, "a", 1)], columns=["item", "code", "label"])
    with pytest.raises(ModelError, match="too few"):
        contrastive_finetune(["x", "y"], labels, tmp_path / "enc")


MONEY = ["The budget was cut.", "We could not pay for it.", "The grant ran out.", "No money for travel.", "Funding ended.", "Costs went up."]
TIME = ["No hours in the week.", "Deadlines are impossible.", "We ran out of time.", "The schedule is too tight.", "Never enough time.", "It all takes too long."]


def test_finetune_saves_a_loadable_model_that_separates_the_codes(tmp_path, minilm_encoder):
    base_encoder = minilm_encoder  # contrastive_finetune's model=None is MiniLM (USE cannot be fine-tuned)
    texts = MONEY + TIME
    labels = pd.DataFrame({"item": range(12), "code": ["money"] * 6 + ["time"] * 6, "label": 1})
    cfg = FinetuneConfig(pairs_per_label=6, epochs=3, batch_size=8, learning_rate=1e-4, seed=0)
    res = contrastive_finetune(texts, labels, tmp_path / "enc", config=cfg)
    assert (tmp_path / "enc" / "model.safetensors").exists() and res.pairs_trained == 3 * res.pairs
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())  # complete or absent

    def gap(X):
        within = np.mean([X[i] @ X[j] for i in range(12) for j in range(12) if i != j and (i < 6) == (j < 6)])
        across = np.mean([X[i] @ X[j] for i in range(6) for j in range(6, 12)])
        return within - across

    tuned = SentenceTransformerEncoder(res.path)
    assert tuned.model_id != base_encoder.model_id  # its own cache key
    assert gap(tuned.encode(texts)) > gap(base_encoder.encode(texts)) + 0.05


def test_finetune_project_on_decisions_and_switch(tmp_path):
    from coder_assist.core.template import parse_template
    from coder_assist.ml.embed import load_encoder
    from coder_assist.app.training import finetune_project
    from coder_assist.app.pipeline import import_files, init_project

    tpl = parse_template({"name": "toy", "codes": [
        {"name": "Money", "description": "Funding.", "examples": ["There is no budget."]},
        {"name": "Time", "description": "Deadlines.", "examples": ["No hours in the week."]},
    ]})
    (tmp_path / "a.txt").write_text("".join(f"Interviewer: Q?\nP1: {m}\nInterviewer: And?\nP1: {t}\n" for m, t in zip(MONEY, TIME)), encoding="utf-8")
    p = init_project(tmp_path / "proj", tpl, model="minilm")
    assert p.meta("model") == "all-MiniLM-L6-v2"  # the alias is recorded by its one name
    import_files(p, [tmp_path / "a.txt"])
    for sid, text in zip(p.segments().id, p.segments().text):
        p.record_decision(int(sid), "money", "accept" if text in MONEY else "reject", "ann")
    with pytest.raises(ModelError, match="at least 100"):
        finetune_project(p)
    res = finetune_project(p, config=FinetuneConfig(pairs_per_label=2, batch_size=4), min_decisions=10, use=True)
    assert res.path.parent == p.folder / "models" and res.path.name.startswith("encoder-")
    assert p.meta("model") == str(res.path.resolve())
    assert load_encoder(p.meta("model"), cache=False).encode(["x"]).shape == (1, 384)


def test_a_use_project_refuses_to_fine_tune_and_names_minilm(tmp_path):
    """The default encoder (USE) cannot be fine-tuned: the project says so and what to use,
    rather than silently switching itself to a fine-tuned MiniLM."""
    from coder_assist.core.template import parse_template
    from coder_assist.app.training import finetune_project, finetune_unavailable
    from coder_assist.app.pipeline import init_project

    tpl = parse_template({"name": "toy", "codes": [{"name": "Money", "description": "Funding."}]})
    p = init_project(tmp_path / "proj", tpl)
    assert p.meta("model") == "use-multilingual-v3"
    assert "--model all-MiniLM-L6-v2" in finetune_unavailable(p)
    with pytest.raises(ModelError, match="cannot be fine-tuned.*--model all-MiniLM-L6-v2"):
        finetune_project(p, min_decisions=0)
    assert p.meta("model") == "use-multilingual-v3" and not (p.folder / "models").exists()
    with pytest.raises(ModelError, match="--model all-MiniLM-L6-v2"):
        contrastive_finetune(["x", "y"], pd.DataFrame(columns=["item", "code", "label"]), tmp_path / "enc", model="use-multilingual-v3")
    p2 = init_project(tmp_path / "mini", tpl, model="all-MiniLM-L6-v2")
    assert finetune_unavailable(p2) is None
