"""A synthetic coder-assist project of any size, built by inserting rows directly (no model).

Used by ``bench/review_queue.py``. The project is realistic in shape, not in content: the
default template (49 codes), transcripts of alternating interviewer questions and participant
answers cut into 3-sentence segments, about 1.15 suggestions per segment with confidences as
low and spread as the cold-start model's, and evidence taken from the template's examples.
Offsets are exact (``text[start:end] == segment text``), as import would store them.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

from coder_assist.app.pipeline import init_project
from coder_assist.store.project import Project

WORDS = (
    "we they council team people budget time staff meeting service carers group funding plan "
    "community partners board money listen change work training manager support health care "
    "patients family residents volunteers voice decision project pilot report paperwork trust "
    "really honestly always never sometimes often just still actually quite very more less "
    "the a of to and in that it for on with was is be have had not but what all were when "
    "there can said which do their if will up about out them then she he many some so would"
).split()


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(7, 15))
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def build(
    folder: str | Path,
    n_segments: int = 100_000,
    *,
    segments_per_transcript: int = 200,
    seed: int = 0,
) -> Project:
    """Create the project in ``folder`` (must not hold one) and return it open."""
    rng = random.Random(seed)
    project = init_project(folder)
    template = project.template()
    leaves = template.leaves()
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    n_transcripts = -(-n_segments // segments_per_transcript)
    sectors, levels = ["Local Authority", "NHS", "Voluntary"], ["Strategic", "Operational", "Frontline"]
    made = 0
    with project.transaction():
        conn = project.conn
        for ti in range(n_transcripts):
            name = f"T{ti:05d}_{sectors[ti % 3].split()[0]}_{levels[(ti // 3) % 3]}"
            want = min(segments_per_transcript, n_segments - made)
            parts: list[str] = []
            pos = 0
            turns, segs = [], []
            turn_idx = seg_idx = 0
            speaker = f"P{ti}"

            def add(text: str) -> tuple[int, int]:
                nonlocal pos
                start = pos
                parts.append(text)
                pos += len(text)
                return start, pos

            while seg_idx < want:
                add("Interviewer: ")
                a, b = add(sentence(rng).rstrip(".") + "?")
                add("\n\n")
                turns.append((turn_idx, "Interviewer", a, b))
                turn_idx += 1
                add(f"{speaker}: ")
                k = min(rng.randint(1, 5), want - seg_idx)
                turn_start = pos
                for j in range(k):
                    if j:
                        add(" ")
                    s0, s1 = add(" ".join(sentence(rng) for _ in range(3)))
                    segs.append((turn_idx, seg_idx, s0, s1))
                    seg_idx += 1
                turns.append((turn_idx, speaker, turn_start, pos))
                turn_idx += 1
                add("\n\n")
            text = "".join(parts)
            tid = conn.execute(
                "INSERT INTO transcripts(name, source_path, format, encoding, text, imported_at) VALUES (?, NULL, 'txt', 'utf-8', ?, ?)",
                (name, text, now),
            ).lastrowid
            conn.executemany(
                "INSERT INTO attributes(transcript_id, key, value) VALUES (?, ?, ?)",
                [(tid, "participant", speaker), (tid, "sector", sectors[ti % 3]), (tid, "level", levels[(ti // 3) % 3])],
            )
            conn.executemany(
                'INSERT INTO turns(transcript_id, idx, speaker, start, "end", timestamp) VALUES (?, ?, ?, ?, ?, NULL)',
                [(tid, i, sp, a, b) for i, sp, a, b in turns],
            )
            conn.executemany(
                'INSERT INTO segments(transcript_id, turn_idx, idx, start, "end", text, speaker) VALUES (?, ?, ?, ?, ?, ?, ?)',
                [(tid, t, i, a, b, text[a:b], speaker) for t, i, a, b in segs],
            )
            made += want
    mv = project.add_model_version("synthetic", "none", {"note": "bench/review_synth.py: random suggestions"})
    seg_ids = [r[0] for r in project.conn.execute("SELECT id FROM segments ORDER BY id")]
    rows = []
    for sid in seg_ids:
        k = rng.choices([0, 1, 2, 3], weights=[25, 45, 20, 10])[0]
        for rank, code in enumerate(rng.sample(leaves, k), 1):
            conf = round(rng.betavariate(2, 9) / rank, 4)
            ex = rng.choice(code.examples) if code.examples else None
            rows.append(
                (sid, code.id, mv, rank, conf, conf, ex.text if ex else code.description, ex.source if ex else "description",
                 round(rng.uniform(0.3, 0.8), 3), now)
            )
    with project.transaction():
        project.conn.executemany(
            "INSERT INTO suggestions(segment_id, code_id, model_version_id, rank, confidence, similarity, evidence, "
            "evidence_source, evidence_similarity, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return project
