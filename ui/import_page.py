"""Import page: upload transcripts and an attribute sheet into the project.

Every uploaded file is checked on its own first, so each problem is shown next to the file it
belongs to. Import is then all or nothing (:func:`coder_assist.app.pipeline.import_files` reads
everything before it writes anything, in one transaction): a project never holds half an
import. Uploads are written to a temporary folder under their original names (the transcript
name is the file name), which is removed afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from coder_assist.core.errors import CoderAssistError
from coder_assist.app.pipeline import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, parse_attribute_options, read_attributes, read_transcript
from coder_assist.app.projects import Project
from ui import common, widgets

UPLOAD_VERSION = "imp_upload_v"
FLASH_KEY = "imp_flash"
EXTRA_KEY = "imp_extra"




def safe_name(name: str) -> str | None:
    """The file's own name, without any folder part a browser might send; ``None`` if nothing
    usable is left (empty, a dot file, '..')."""
    base = Path(str(name).replace("\\", "/")).name.strip()
    if not base or base.startswith(".") or base in ("..",):
        return None
    return base


# One upload: more files than this are better imported with `coder-assist import` (each file is
# also held in the browser session's memory until imported). Per-file size: ingest.MAX_FILE_BYTES,
# also Streamlit's server.maxUploadSize in .streamlit/config.toml.
MAX_UPLOAD_FILES = 200
MAX_UPLOAD_TOTAL_BYTES = 200 * 1024 * 1024


def upload_limit_problem(files: list[tuple[str, bytes]]) -> str | None:
    total = sum(len(d) for _, d in files)
    if len(files) > MAX_UPLOAD_FILES:
        return (f"{len(files)} files in one upload; the limit is {MAX_UPLOAD_FILES}. Import them in batches, "
                "or all at once with 'coder-assist import PROJECT FOLDER'.")
    if total > MAX_UPLOAD_TOTAL_BYTES:
        return (f"the upload is {total / 2**20:.0f} MB in all; the limit is {MAX_UPLOAD_TOTAL_BYTES // 2**20} MB. "
                "Import the files in batches, or use 'coder-assist import PROJECT FOLDER'.")
    return None


def check_files(project: Project, files: list[tuple[str, bytes]], attributes: tuple[str, bytes] | None, extra: str) -> dict:
    """Check an upload without importing it. Returns ``rows`` (one per transcript file: file,
    transcript, format, turns, speakers, passages, problem), ``attr_problem`` / ``attr_unmatched``
    for the attribute sheet, ``extra_problem`` (also: too many files, too large in all), and ``ok``."""
    limit = upload_limit_problem(files)
    if limit:
        return {"rows": [], "attr_problem": None, "attr_unmatched": [], "extra_problem": limit, "ok": False}
    existing = set(project.transcripts()["name"])
    rows, seen = [], {}
    with tempfile.TemporaryDirectory(prefix="coder-assist-check-") as tmp:
        for raw_name, data in files:
            name = safe_name(raw_name)
            row = {"file": raw_name, "transcript": None, "format": None, "turns": None, "speakers": None, "problem": None}
            rows.append(row)
            if name is None:
                row["problem"] = "unusable file name"
                continue
            if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                row["problem"] = f"unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}"
                continue
            if len(data) > MAX_FILE_BYTES:
                row["problem"] = f"the file is {len(data) / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB per transcript (split it into parts)"
                continue
            path = Path(tmp) / name
            path.write_bytes(data)
            try:
                t = read_transcript(path)
            except CoderAssistError as exc:
                row["problem"] = getattr(exc, "problem", str(exc))
                continue
            row.update(transcript=t.name, format=t.format, turns=len(t.turns), speakers=", ".join(t.speakers()))
            if t.name in existing:
                row["problem"] = f"a transcript named {t.name!r} is already in the project (rename the file to import it as another one)"
            elif t.name in seen:
                row["problem"] = f"two files would both be named {t.name!r} (also {seen[t.name]})"
            seen.setdefault(t.name, raw_name)
        attr_problem, unmatched = None, []
        if attributes is not None:
            aname = safe_name(attributes[0]) or "attributes.csv"
            apath = Path(tmp) / f"attributes-{aname}"
            apath.write_bytes(attributes[1])
            try:
                table = read_attributes(apath)
                unmatched = sorted(set(table.index) - set(seen))
            except CoderAssistError as exc:
                attr_problem = getattr(exc, "problem", str(exc))
    extra_problem = None
    if extra.strip():
        try:
            parse_attribute_options(_extra_options(extra))
        except CoderAssistError as exc:
            extra_problem = str(exc)
    ok = bool(files) and not any(r["problem"] for r in rows) and attr_problem is None and extra_problem is None
    return {"rows": rows, "attr_problem": attr_problem, "attr_unmatched": unmatched, "extra_problem": extra_problem, "ok": ok}


def status_table(rows: list[dict]) -> pd.DataFrame:
    """One line per uploaded file: ✓ ready or ✗ and the problem."""
    df = pd.DataFrame(rows, columns=["file", "transcript", "format", "turns", "speakers", "problem"])
    df["status"] = [f"✗ {r['problem']}" if r.get("problem") else "✓ ready" for r in rows]
    return df[["file", "status", "transcript", "format", "turns", "speakers"]]


def _extra_options(extra: str) -> list[str]:
    return [part.strip() for part in extra.replace(";", ",").split(",") if part.strip()]


def do_import(project: Project, files: list[tuple[str, bytes]], attributes: tuple[str, bytes] | None, extra: str) -> list:
    """Write the upload to a temporary folder under the original names and import it, all or
    nothing. Returns the imported transcripts."""
    from coder_assist.app.pipeline import import_files

    with tempfile.TemporaryDirectory(prefix="coder-assist-import-") as tmp:
        folder = Path(tmp) / "transcripts"
        folder.mkdir()
        paths = []
        for raw_name, data in files:
            name = safe_name(raw_name)
            if name is None:
                raise CoderAssistError(f"{raw_name!r}: unusable file name")
            path = folder / name
            path.write_bytes(data)
            paths.append(path)
        attr_path = None
        if attributes is not None:
            attr_path = Path(tmp) / (safe_name(attributes[0]) or "attributes.csv")
            attr_path.write_bytes(attributes[1])
        extra_attrs = parse_attribute_options(_extra_options(extra)) if extra.strip() else None
        return import_files(project, paths, attributes=attr_path, extra_attributes=extra_attrs)


REFI_SUFFIXES = (".qdpx", ".qdc")


def _refi_run(project: Project, files: list[tuple[str, bytes]], dry_run: bool) -> list[dict]:
    from coder_assist.app.importing import import_qdc, import_qdpx

    rows = []
    with tempfile.TemporaryDirectory(prefix="coder-assist-refi-") as tmp:
        for raw_name, data in files:
            row = {"file": raw_name, "report": None, "problem": None}
            rows.append(row)
            name = safe_name(raw_name)
            if name is None:
                row["problem"] = "unusable file name"
                continue
            path = Path(tmp) / name
            path.write_bytes(data)
            fn = import_qdpx if path.suffix.lower() == ".qdpx" else import_qdc
            try:
                row["report"] = fn(project, path, dry_run=dry_run)
            except CoderAssistError as exc:
                row["problem"] = getattr(exc, "problem", str(exc))
                if not dry_run:
                    break  # files before it are in; the rest wait for the problem to be fixed
    return rows


def check_refi(project: Project, files: list[tuple[str, bytes]]) -> list[dict]:
    """Read each REFI-QDA file (.qdpx project or .qdc codebook) and do its import in a
    transaction that is rolled back: ``report`` says what the import would do, or ``problem``
    why it cannot."""
    return _refi_run(project, files, dry_run=True)


def do_refi_import(project: Project, files: list[tuple[str, bytes]]) -> list[dict]:
    """Import REFI-QDA files one after the other, each all or nothing; stops at the first problem."""
    return _refi_run(project, files, dry_run=False)


def _refi_section(project: Project, files: list[tuple[str, bytes]], v: int) -> None:
    st.subheader("REFI-QDA files", anchor=False)
    st.caption("A .qdpx project from NVivo, ATLAS.ti, MAXQDA or QualCoder brings its text sources (with their case "
               "variables as attributes) and its coding, as accepted decisions under each coder's name; a .qdc codebook "
               "adds the codes the template lacks. See docs/refi-qda.md.")
    rows = check_refi(project, files)
    for r in rows:
        if r["problem"]:
            st.error(f"**{widgets.md_escape(r['file'])}**: {widgets.md_escape(r['problem'])}", icon=":material/error:")
        else:
            st.success(widgets.md_escape(r["report"].summary().replace(r["report"].file, r["file"])), icon=":material/check:")
    ok = bool(rows) and not any(r["problem"] for r in rows)
    if st.button(f"Import {len(rows)} REFI-QDA file{'s' if len(rows) != 1 else ''}", key="imp_refi_go", type="primary", disabled=not ok):
        done = do_refi_import(project, files)
        bad = [r for r in done if r["problem"]]
        if bad:
            widgets.flash(FLASH_KEY, "error", f"{bad[0]['file']} was not imported: {bad[0]['problem']}")
        else:
            n = sum(r["report"].decisions_added for r in done)
            widgets.flash(FLASH_KEY, "ok", f"Imported {len(done)} REFI-QDA file(s): {n} coding decision(s).")
            st.session_state[UPLOAD_VERSION] = v + 1
        st.rerun()


def _on_compute() -> None:
    project, _ = common.page_context()
    from coder_assist.app.pipeline import compute_suggestions

    try:
        mv, n = compute_suggestions(project, common.get_encoder(project.meta("model")))
    except CoderAssistError as exc:
        widgets.flash(FLASH_KEY, "error", f"Suggestions not computed: {exc}")
        return
    widgets.flash(FLASH_KEY, "ok", f"Suggestions computed: {n} (model version {mv}). They are in the Review queue now.")


def render() -> None:
    project, name = common.page_context()
    st.header("Import transcripts", anchor=False)
    widgets.show_flash(FLASH_KEY)

    v = st.session_state.get(UPLOAD_VERSION, 0)
    st.caption(
        "Formats: " + ", ".join(SUPPORTED_SUFFIXES) + " (see the README for speaker labels). The file name becomes the "
        "transcript's name. Nothing is imported until every file reads cleanly, and then all of them are imported together."
    )
    ups = st.file_uploader("Transcripts (or REFI-QDA .qdpx / .qdc)", type=[s.lstrip(".") for s in SUPPORTED_SUFFIXES + REFI_SUFFIXES],
                           accept_multiple_files=True, key=f"imp_files_{v}")
    c1, c2 = st.columns(2)
    attr_up = c1.file_uploader("Attribute sheet (optional CSV: a 'transcript' column, one column per attribute)", type=["csv"],
                               key=f"imp_attrs_{v}")
    extra = c2.text_input("Attributes for every file of this import (optional)", key=EXTRA_KEY, placeholder="e.g. site=North, wave=1")

    files = [(u.name, u.getvalue()) for u in ups or []]
    refi_files = [(n, d) for n, d in files if Path(n).suffix.lower() in REFI_SUFFIXES]
    if refi_files:
        if len(refi_files) != len(files):
            st.warning("Import REFI-QDA files (.qdpx, .qdc) on their own: remove the other files from this upload, or these.")
        else:
            _refi_section(project, refi_files, v)
        files = []
    # An attributes.csv among the transcripts is the attribute sheet, as for folders on the command line.
    sheet = next(((n, d) for n, d in files if (safe_name(n) or "").lower() == "attributes.csv"), None)
    files = [(n, d) for n, d in files if (n, d) != sheet]
    attributes = (attr_up.name, attr_up.getvalue()) if attr_up is not None else sheet
    if files or attributes:
        check = check_files(project, files, attributes, extra or "")
        if check["rows"]:
            st.dataframe(status_table(check["rows"]), hide_index=True, width="stretch",
                         column_config={"status": st.column_config.TextColumn("Status", width="large")})
            bad = [r for r in check["rows"] if r["problem"]]
            for r in bad:
                st.error(f"**{widgets.md_escape(r['file'])}**: {widgets.md_escape(r['problem'])}", icon=":material/error:")
        if check["attr_problem"]:
            st.error(f"**Attribute sheet {widgets.md_escape(attributes[0])}**: {widgets.md_escape(check['attr_problem'])}", icon=":material/error:")
        elif check["attr_unmatched"]:
            st.warning("Attribute rows that match no uploaded file (ignored): " + ", ".join(check["attr_unmatched"]))
        if check["extra_problem"]:
            st.error(check["extra_problem"])
        n = len(files)
        if not files:
            st.info("Add transcript files to import.")
        elif not check["ok"]:
            st.warning("Fix or remove the files marked ✗: nothing is imported while any file has a problem.")
        if st.button(f"Import {n} transcript{'s' if n != 1 else ''}", key="imp_go", type="primary", disabled=not check["ok"]):
            try:
                done = do_import(project, files, attributes, extra or "")
            except CoderAssistError as exc:
                widgets.flash(FLASH_KEY, "error", f"Nothing was imported: {exc}")
            else:
                tr = project.transcripts()
                n_segs = int(tr.loc[tr["name"].isin([t.name for t in done]), "n_segments"].sum())
                widgets.flash(FLASH_KEY, "ok", f"Imported {len(done)} transcript(s): {n_segs} passages to code. "
                                                     "Compute suggestions below to review them.")
                st.session_state[UPLOAD_VERSION] = v + 1
            st.rerun()

    st.divider()
    _suggestions_section(project)
    st.subheader("In this project", anchor=False)
    tr = project.transcripts()
    if tr.empty:
        st.caption("No transcripts yet.")
    else:
        attrs = project.attributes()
        table = tr[["name", "format", "n_segments", "imported_at"]].merge(attrs, left_on="name", right_index=True, how="left")
        st.dataframe(table.rename(columns={"n_segments": "passages"}), hide_index=True, width="stretch")


def _suggestions_section(project: Project) -> None:
    mv = project.latest_model_version()
    unscored = project.segments_imported_after(mv)
    from coder_assist.app import modelview

    cards = {mid: (k, card) for mid, k, card in modelview.model_cards(project)}
    kind = cards[mv][0] if mv in cards else None
    st.subheader("Suggestions", anchor=False)
    if mv is None:
        st.caption("No suggestions yet.")
    else:
        st.caption(f"Active model version {mv} ({modelview.kind_label(*cards[mv])}).")
    if kind == modelview.LEARNED:
        st.caption("The active model comes from a retrain on your decisions. To score new transcripts and template changes "
                   "with it, retrain: **Model** page → **Retrain now**.")
        return
    st.button(
        "Compute suggestions" if mv is None else "Compute suggestions again",
        key="imp_compute",
        on_click=_on_compute,
        help="Scores every passage against the template's examples (loads the embedding model: allow a minute). "
        "Needed after importing transcripts or changing the template. Your decisions are kept.",
    )
    if unscored:
        from coder_assist.app.figures import label

        st.info(f"{label(unscored, 'passage')} imported after suggestions were last computed: "
                f"{'it has' if unscored == 1 else 'they have'} none yet.", icon=":material/info:")
