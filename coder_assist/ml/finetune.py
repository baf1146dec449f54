"""Contrastive fine-tuning of the encoder on the researcher's decisions (SetFit-style).

SetFit's first stage: pairs of labelled passages, "same code" pulled together and "different
code" pushed apart (cosine-similarity loss), so that a linear head on the new embeddings
separates the codes better. Decisions are partial labels, so pairs are only made where the
labels say something:

* two passages accepted for the same code: similar (1);
* a passage accepted for code A and one accepted for code B, when neither is known to carry
  the other code: dissimilar (0);
* a passage accepted for A and one rejected for A: dissimilar (0) — what a reject does say.

The loop is a few lines of plain PyTorch over the sentence-transformers module (no trainer,
no ``datasets``/``accelerate``), bounded by a pair budget and a wall-clock budget, so it can
run in the background on a 2-core laptop. The result is an ordinary sentence-transformers
folder (safetensors, never pickle) that :func:`coder_assist.ml.embed.load_encoder` loads like
any other model. Whether it is worth its minutes is the benchmark's call
(``bench/finetune_probe.py``), not this module's.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .encoder import resolve_model
from ..core.errors import ModelError


@dataclass
class FinetuneConfig:
    #: Pairs per labelled passage (SetFit's default is 20 iterations x 2; a CPU cannot afford it).
    pairs_per_label: int = 4
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    max_seq_length: int = 128
    #: Stop after this many seconds of training (the pairs seen so far are kept).
    time_budget_s: float | None = None
    seed: int = 0


@dataclass
class FinetuneResult:
    path: Path
    pairs: int
    pairs_trained: int
    seconds: float
    final_loss: float | None


def make_pairs(labels: pd.DataFrame, n_pairs: int, seed: int = 0) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, target)`` over passage indices from partial labels.

    ``labels``: columns ``item`` (passage index), ``code`` and ``label`` (1 accept, 0 reject).
    Half the pairs are positives (same code), half negatives (other code or a reject), drawn
    uniformly over codes so a frequent code does not take the whole budget.
    """
    rng = random.Random(seed)
    pos = labels[labels["label"] == 1]
    neg = labels[labels["label"] == 0]
    by_code = {c: sorted(set(g["item"])) for c, g in pos.groupby("code")}
    rejected = {c: sorted(set(g["item"])) for c, g in neg.groupby("code")}
    carries = pos.groupby("item")["code"].agg(set).to_dict()
    codes = [c for c, items in by_code.items() if items]
    if not codes:
        return []
    pairs: list[tuple[int, int, float]] = []
    seen: set[tuple[int, int]] = set()
    tries = 0
    while len(pairs) < n_pairs and tries < 20 * n_pairs:
        tries += 1
        a = rng.choice(codes)
        i = rng.choice(by_code[a])
        if len(pairs) % 2 == 0:
            if len(by_code[a]) < 2:
                continue
            j, target = rng.choice(by_code[a]), 1.0
            if j == i:
                continue
        else:
            others = [c for c in codes if c != a]
            if rejected.get(a) and (not others or rng.random() < 0.5):
                j = rng.choice(rejected[a])
            elif others:
                j = rng.choice(by_code[rng.choice(others)])
                if a in carries.get(j, ()) or bool(carries.get(i, set()) & carries.get(j, set())):
                    continue  # multi-label passages: "different code" would be false
            else:
                continue
            target = 0.0
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        pairs.append((i, j, target))
    return pairs


def contrastive_finetune(
    texts: Sequence[str],
    labels: pd.DataFrame,
    out_dir: str | Path,
    *,
    model: str | None = None,
    config: FinetuneConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` on pairs from ``labels`` over ``texts`` and save it to ``out_dir``
    (written to a temporary sibling, then renamed: complete or absent). ``model`` must be a
    sentence-transformers model; None is the bundled all-MiniLM-L6-v2 (not the default
    encoder, the multilingual USE, which cannot be fine-tuned: naming it raises ModelError)."""
    import shutil
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer

    cfg = config or FinetuneConfig()
    target, _ = resolve_model(model)
    pairs = make_pairs(labels, cfg.pairs_per_label * labels["item"].nunique(), cfg.seed)
    if len(pairs) < cfg.batch_size:
        raise ModelError(f"too few labelled pairs to fine-tune ({len(pairs)}); code more passages first")
    torch.manual_seed(cfg.seed)
    st = SentenceTransformer(target, device="cpu", local_files_only=True)
    st.max_seq_length = cfg.max_seq_length
    st.train()
    prepare = getattr(st, "preprocess", None) or st.tokenize  # tokenize is deprecated in 6.x
    opt = torch.optim.AdamW(st.parameters(), lr=cfg.learning_rate)
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    done = 0
    loss_v = None
    total = len(pairs) * cfg.epochs
    stop = False
    for _ in range(cfg.epochs):
        rng.shuffle(pairs)
        for b in range(0, len(pairs), cfg.batch_size):
            batch = pairs[b : b + cfg.batch_size]
            feats = [prepare([texts[p[k]] for p in batch]) for k in (0, 1)]
            emb = [st(f)["sentence_embedding"] for f in feats]
            cos = torch.nn.functional.cosine_similarity(emb[0], emb[1])
            loss = torch.nn.functional.mse_loss(cos, torch.tensor([p[2] for p in batch], dtype=cos.dtype))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
            done += len(batch)
            if progress:
                progress(done, total)
            if cfg.time_budget_s is not None and time.perf_counter() - t0 > cfg.time_budget_s:
                stop = True
                break
        if stop:
            break
    st.eval()
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-encoder-", dir=out.parent))
    try:
        st.save(str(tmp), safe_serialization=True)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FinetuneResult(out, len(pairs), done, round(time.perf_counter() - t0, 1), loss_v)


def decision_labels(decisions: pd.DataFrame, item_of: dict[int, int]) -> pd.DataFrame:
    """Partial labels (item, code, label) from a project's current decisions."""
    d = decisions[decisions["action"].isin(["accept", "reject"]) & decisions["segment_id"].isin(item_of)]
    return pd.DataFrame({
        "item": [item_of[int(s)] for s in d["segment_id"]],
        "code": d["code_id"].to_numpy(),
        "label": (d["action"] == "accept").astype(int).to_numpy(),
    })


#: Fewer decisions than this and the pairs mostly repeat the template's examples.
MIN_DECISIONS = 100


__all__ = ["FinetuneConfig", "FinetuneResult", "make_pairs", "contrastive_finetune", "decision_labels", "MIN_DECISIONS"]
