"""Pre-code the demo set through the Python API and check what a researcher relies on."""

import numpy as np
import pandas as pd

import coder_assist
from coder_assist import Project, build_demo_project, load_transcripts
from tests.conftest import DEMO_DIR


def test_precode_demo_set(encoder, template):
    df = coder_assist.precode(DEMO_DIR, template, encoder=encoder)
    assert isinstance(df, pd.DataFrame) and len(df) > 100
    assert df.attrs["n_segments"] >= 200  # 218: a short answer is one passage (283 in 3-sentence windows before)
    assert list(df.columns[:2]) == ["transcript", "speaker"]
    assert {"level", "participant", "sector"} <= set(df.columns)
    # Offsets index the stored transcript text exactly.
    texts = {t.name: t.text for t in load_transcripts([DEMO_DIR])}
    assert all(texts[r.transcript][r.start : r.end] == r.text for r in df.itertuples())
    # Every code path exists in the template and is a leaf code.
    leaf_paths = {c.path_str for c in template.leaves()}
    assert set(df.code_path) <= leaf_paths
    assert df.code_path.str.count(" > ").eq(2).all()
    # Evidence is present and is one of the code's own examples or its description.
    for r in df.itertuples():
        code = template.codes[r.code_id]
        assert r.evidence in [e.text for e in code.examples] + [code.description]
        assert 0 < r.evidence_similarity <= 1
    assert df.confidence.between(0, 1).all()
    assert df.groupby(["transcript", "start"]).size().max() <= 3  # top-k per segment
    # No interviewer speech is coded.
    assert not df.speaker.str.lower().isin(["interviewer", "i"]).any()
    # Multi-label: some passages carry more than one code.
    assert (df.groupby(["transcript", "start"]).size() > 1).any()

    # A rerun encodes nothing: every segment and template text comes from the cache.
    encoded_first = encoder.stats.encoded
    again = coder_assist.precode(DEMO_DIR, template, encoder=encoder)
    assert encoder.stats.encoded == encoded_first
    pd.testing.assert_frame_equal(df, again)


def test_demo_project_through_the_store(tmp_path, encoder):
    with build_demo_project(tmp_path / "demo", encoder=encoder) as p:
        c = p.counts()
        assert c["transcripts"] == 9 and c["segments"] >= 200 and c["suggestions"] > 100
        sug = p.suggestions()
        mv = int(sug.model_version_id.iloc[0])
        card = p.conn.execute("SELECT card FROM model_versions WHERE id = ?", (mv,)).fetchone()[0]
        assert '"calibration"' in card
        attrs = p.attributes()
        assert set(attrs.sector) == {"Local Authority", "NHS", "VCSE"}
        assert set(attrs.level) == {"Strategic", "Operational", "Front-line"}
    # Reopening finds everything; the decisions table is ready for review.
    with Project.open(tmp_path / "demo") as p:
        s = p.suggestions().iloc[0]
        p.record_decision(int(s.segment_id), s.code_id, "accept", "ann", suggestion_id=int(s.suggestion_id))
        assert p.current_decisions().action.tolist() == ["accept"]
