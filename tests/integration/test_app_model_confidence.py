"""The Model page's "What a confidence means" section (AppTest, no retrain): before any learned
model it says the number is not calibrated and shows the template suggestions' reliability table."""

from __future__ import annotations

from coder_assist.app import modelview
from tests.integration.test_app_model import base_project, open_model_page, project_dir  # noqa: F401 (fixtures)


def test_model_page_says_what_a_confidence_means(project_dir):
    at = open_model_page()
    assert "What a confidence means" in [h.value for h in at.subheader]
    notes = [m.value for m in at.info]
    assert any(v.startswith(modelview.NOT_CALIBRATED) for v in notes), notes
    table = next(df for df in (d.value for d in at.dataframe) if "bin" in df.columns and "accept_rate" in df.columns)
    # base_project: 24 decided suggestions at 0.3 / 0.4 / 0.6.
    assert table["n"].sum() == 24
    assert set(table["bin"]) == {"0.3-0.4", "0.4-0.5", "0.6-0.7"}
