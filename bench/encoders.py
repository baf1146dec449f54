"""Encoders compared: bundled MiniLM (ONNX fp32, the default path) against the multilingual
Universal Sentence Encoder v3 (int8 ONNX, ``--model use-multilingual-v3``).

One command, printing JSON (and writing it with --out):
    nice -n 19 .venv/bin/python bench/encoders.py --out bench/results/encoders.json

Quality: fold 0 of each evaluation set (pool = folds 1-4, test = fold 0), features = [unit
embedding, previous row's embedding] (the context turn: the question before an answer, the
other speaker's turn), logistic regression as the simulator's "all labels" baseline
(coder_assist.eval.simulate.fit_all: C=1, balanced; decisions by its ``metrics``). Trained on
300 random pool units (mean of seeds 0-4, each seed listed) and on every pool unit. Vectors
come through the on-disk embedding cache, keyed by model id.

Speed: model load (a fresh process: import + load + one encode, median of 3) and encode
throughput on 2,000 distinct AnnoMI + nhs-fft texts with no cache (median of 3, interleaved).

Multilingual: a small hand-written parallel set (8 sentences in en/es/de/fr/pt): how often a
sentence's nearest neighbour among the other language's 8 is its translation (from English).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from coder_assist.eval.simulate import fit_all, load_dataset, metrics  # noqa: E402
from coder_assist.ml.embed import load_encoder  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"
SETS = ["annomi-therapist", "annomi-client", "annomi-therapist-fine", "nhs-fft"]
MODELS = {"minilm": None, "use": "use-multilingual-v3"}
SEEDS = range(5)

PARALLEL = {
    "en": ["I never have enough time to see my family.", "The nurse was very kind and explained everything.",
           "We waited four hours in the emergency department.", "I want to stop smoking but it is hard.",
           "The food in the hospital was cold.", "My doctor did not listen to me.",
           "Parking at the clinic is far too expensive.", "I feel much better since I started walking every day."],
    "es": ["Nunca tengo suficiente tiempo para ver a mi familia.", "La enfermera fue muy amable y lo explicó todo.",
           "Esperamos cuatro horas en urgencias.", "Quiero dejar de fumar pero es difícil.",
           "La comida del hospital estaba fría.", "Mi médico no me escuchó.",
           "El aparcamiento de la clínica es demasiado caro.", "Me siento mucho mejor desde que empecé a caminar cada día."],
    "de": ["Ich habe nie genug Zeit, meine Familie zu sehen.", "Die Krankenschwester war sehr freundlich und hat alles erklärt.",
           "Wir haben vier Stunden in der Notaufnahme gewartet.", "Ich möchte mit dem Rauchen aufhören, aber es ist schwer.",
           "Das Essen im Krankenhaus war kalt.", "Mein Arzt hat mir nicht zugehört.",
           "Das Parken an der Klinik ist viel zu teuer.", "Ich fühle mich viel besser, seit ich jeden Tag spazieren gehe."],
    "fr": ["Je n'ai jamais assez de temps pour voir ma famille.", "L'infirmière était très gentille et a tout expliqué.",
           "Nous avons attendu quatre heures aux urgences.", "Je veux arrêter de fumer mais c'est difficile.",
           "La nourriture à l'hôpital était froide.", "Mon médecin ne m'a pas écouté.",
           "Le parking de la clinique est beaucoup trop cher.", "Je me sens beaucoup mieux depuis que je marche tous les jours."],
    "pt": ["Nunca tenho tempo suficiente para ver a minha família.", "A enfermeira foi muito simpática e explicou tudo.",
           "Esperámos quatro horas nas urgências.", "Quero deixar de fumar mas é difícil.",
           "A comida do hospital estava fria.", "O meu médico não me ouviu.",
           "O estacionamento da clínica é caro demais.", "Sinto-me muito melhor desde que comecei a caminhar todos os dias."],
}


def quality(name: str, enc) -> dict:
    ds = load_dataset(EVAL / name)
    u = ds.units
    X = enc.encode(u["text"].tolist())
    P = enc.encode(u["prev_text"].tolist())
    F = np.hstack([X, P])
    pool = np.flatnonzero(u["fold"].to_numpy() != 0)
    test = np.flatnonzero(u["fold"].to_numpy() == 0)
    codes = u["codes"].tolist()
    names = list(ds.codebook["code"])
    gold = u["codes"].iloc[test].reset_index(drop=True)

    def run(rows) -> dict:
        conf = fit_all(ds, F[rows], [codes[i] for i in rows], F[test])
        m = metrics(ds, names, conf, gold)
        return {"macro_f1": m["macro_f1"], "kappa": m["kappa"]}

    per_seed = [run(np.random.default_rng(s).choice(pool, size=300, replace=False)) for s in SEEDS]
    return {
        "units_pool": len(pool), "units_test": len(test),
        "random_300": {"macro_f1": round(float(np.mean([r["macro_f1"] for r in per_seed])), 4),
                       "kappa": round(float(np.mean([r["kappa"] for r in per_seed])), 4),
                       "macro_f1_per_seed": [r["macro_f1"] for r in per_seed]},
        "all_labels": run(pool),
    }


def load_seconds(model: str | None) -> float:
    code = ("import time; t=time.perf_counter()\nfrom coder_assist.ml.embed import load_encoder\n"
            f"e=load_encoder({model!r}, cache=False); e.encode(['hello']); print(time.perf_counter()-t)")
    env = dict(os.environ)
    env.pop("CODER_ASSIST_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def throughput_texts() -> list[str]:
    import pandas as pd

    texts: list[str] = []
    for name in ("annomi-therapist", "nhs-fft"):
        df = pd.read_csv(EVAL / name / "segments.csv", keep_default_na=False, dtype={"text": str})
        texts += list(dict.fromkeys(t for t in df["text"] if t.strip()))[:1000]
    return list(dict.fromkeys(texts))


def crosslingual(enc) -> dict:
    vec = {lang: enc.encode(s) for lang, s in PARALLEL.items()}
    out = {}
    for lang in PARALLEL:
        if lang == "en":
            continue
        sims = vec["en"] @ vec[lang].T
        out[f"en->{lang}"] = round(float((sims.argmax(1) == np.arange(len(sims))).mean()), 3)
    out["mean_cosine_translation"] = round(float(np.mean([(vec["en"] * vec[l]).sum(1).mean() for l in PARALLEL if l != "en"])), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sets = args.sets.split(",")
    cached = {k: load_encoder(m) for k, m in MODELS.items()}
    raw = {k: load_encoder(m, cache=False) for k, m in MODELS.items()}
    result: dict = {
        "benchmark": "encoders",
        "command": "nice -n 19 .venv/bin/python bench/encoders.py --out bench/results/encoders.json",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)},
        "models": {k: {"model_id": e.model_id, "dim": e.dim, "class": type(e).__name__} for k, e in raw.items()},
        "protocol": "fold 0; [emb, prev emb] + LR (simulate.fit_all); 300 random pool units (mean of 5 seeds) and all pool units",
        "quality": {},
    }
    for name in sets:
        result["quality"][name] = {}
        for k, e in cached.items():
            t0 = time.perf_counter()
            result["quality"][name][k] = quality(name, e)
            print(json.dumps({name: {k: result["quality"][name][k], "seconds": round(time.perf_counter() - t0, 1)}}), file=sys.stderr, flush=True)
    texts = throughput_texts()
    speed: dict[str, list[float]] = {k: [] for k in MODELS}
    for r in range(args.runs):
        for k in (list(MODELS) if r % 2 == 0 else list(MODELS)[::-1]):
            t0 = time.perf_counter()
            raw[k].encode(texts)
            speed[k].append(len(texts) / (time.perf_counter() - t0))
    loads = {k: [] for k in MODELS}
    for r in range(args.runs):
        for k, m in MODELS.items():
            loads[k].append(load_seconds(m))
    result["speed"] = {
        "texts": len(texts),
        "texts_per_second_median": {k: round(statistics.median(v), 1) for k, v in speed.items()},
        "texts_per_second_runs": {k: [round(x, 1) for x in v] for k, v in speed.items()},
        "use_over_minilm": round(statistics.median(speed["use"]) / statistics.median(speed["minilm"]), 2),
        "load_seconds_median": {k: round(statistics.median(v), 2) for k, v in loads.items()},
        "load_seconds_runs": {k: [round(x, 2) for x in v] for k, v in loads.items()},
    }
    result["multilingual"] = {k: crosslingual(e) for k, e in raw.items()}
    result["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
