"""The report: code frequencies, the code x attribute matrix (coded passages and the share of
each cell's transcripts with the code), a heatmap and quotes per code and cell, and the Markdown
that presents them.

Pure: :func:`build` takes the codings frame (rows with transcript, segment_id, start, text,
status, coder, confidence, code_id), the codes, the transcript names and their attributes; no
project. All user text in the Markdown goes through :func:`md_escape`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.template import PATH_SEP
from .tables import ensure_parent

ALL_CELL = "all transcripts"


@dataclass
class Report:
    """The numbers behind the report. ``counts`` and ``shares`` are code x cell frames (index:
    code_path), a cell being one combination of the chosen attributes' values."""

    attributes: list[str]
    frequencies: pd.DataFrame
    counts: pd.DataFrame
    shares: pd.DataFrame
    cell_sizes: pd.Series
    quotes: pd.DataFrame
    scope: dict = field(default_factory=dict)

    def matrix_with_ids(self, which: str) -> pd.DataFrame:
        """``counts`` or ``shares`` with code_id and code_path as columns (for CSV)."""
        m = getattr(self, which)
        ids = self.frequencies.set_index("code_path")["code_id"]
        return m.reset_index().rename(columns={"index": "code_path"}).assign(code_id=lambda d: d["code_path"].map(ids))[
            ["code_id", "code_path", *m.columns]
        ]

def build(frame: pd.DataFrame, codes: pd.DataFrame, names: pd.Series, attr_frame: pd.DataFrame, attributes: Sequence[str], *,
          quotes_per_cell: int = 2) -> Report:
    """The report of a codings frame. ``codes``: id (index), path, active, is_leaf, position;
    ``names``: every transcript's name; ``attr_frame``: attributes by transcript name.

    A passage (segment) counts once per code however many coders coded it; rejected rows never
    count. Machine suggestions in ``frame`` count, and are labelled in the frequencies and quotes.
    """
    attributes = list(attributes)
    cells = _cells(names, attr_frame, attributes)
    cell_sizes = cells.value_counts().reindex(_cell_order(cells, attr_frame, attributes))
    coded = frame[frame["status"].isin(["accepted", "suggested"])].copy()
    coded["cell"] = coded["transcript"].map(cells)
    show = codes[((codes["is_leaf"] == 1) & (codes["active"] == 1)) | codes.index.isin(coded["code_id"])]
    pairs = _passages(coded)
    counts, shares = _matrix(pairs, show, list(cell_sizes.index), cell_sizes)
    freq = _frequencies(frame, pairs, show, len(names))
    quotes = _quotes(coded, pairs, codes, list(cell_sizes.index), quotes_per_cell)
    scope = {
        "include": frame.attrs.get("include"),
        "threshold": frame.attrs.get("threshold"),
        "model_version": frame.attrs.get("model_version"),
        "transcripts": len(names),
        "coders": sorted({c for c in frame.loc[frame["status"] == "accepted", "coder"] if c}),
        "accepted_passages": int(pairs["accepted"].sum()),
        "suggested_passages": int((~pairs["accepted"]).sum()),
    }
    return Report(attributes, freq, counts, shares, cell_sizes.astype(int), quotes, scope)


def _passages(coded: pd.DataFrame) -> pd.DataFrame:
    """One row per (segment, code): accepted if any coder accepted it; coders: how many did.
    Its quote is its first coding's span (a hand-coded phrase quotes the phrase)."""
    acc = coded["status"] == "accepted"
    return (
        coded.assign(acc=acc, acc_coder=coded["coder"].where(acc))
        .groupby(["segment_id", "code_id"], sort=False)
        .agg(transcript=("transcript", "first"), cell=("cell", "first"), accepted=("acc", "any"), coders=("acc_coder", "nunique"),
             confidence=("confidence", "max"), speaker=("speaker", "first"), text=("text", "first"), start=("start", "first"))
        .reset_index()
    )


def _matrix(pairs: pd.DataFrame, show: pd.DataFrame, cols: list[str], cell_sizes: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coded passages and the share of the cell's transcripts with the code, code x cell."""
    counts = pairs.pivot_table(index="code_id", columns="cell", values="segment_id", aggfunc="count", fill_value=0)
    counts = counts.reindex(index=show.index, columns=cols, fill_value=0).astype(int)
    with_code = pairs.groupby(["code_id", "cell"])["transcript"].nunique().unstack(fill_value=0)
    with_code = with_code.reindex(index=show.index, columns=cols, fill_value=0).astype(int)
    shares = with_code.div(cell_sizes.replace(0, pd.NA).astype("float64"), axis=1).fillna(0.0)
    counts.index = shares.index = show["path"].values
    counts.columns.name = shares.columns.name = None
    return counts, shares


def _frequencies(frame: pd.DataFrame, pairs: pd.DataFrame, show: pd.DataFrame, n_transcripts: int) -> pd.DataFrame:
    def per(series: pd.Series) -> "pd.Series":
        return series.reindex(show.index, fill_value=0).astype(int).values

    per_code = pairs.groupby("code_id")
    freq = pd.DataFrame(
        {
            "code_id": show.index,
            "code_path": show["path"].values,
            "passages": per(per_code.size()),
            "accepted_passages": per(per_code["accepted"].sum()),
            "suggested_passages": per(per_code.size() - per_code["accepted"].sum()),
            "codings": per(frame[frame["status"] == "accepted"].groupby("code_id").size()),
            "rejected": per(frame[frame["status"] == "rejected"].groupby("code_id").size()),
            "transcripts": per(per_code["transcript"].nunique()),
        }
    )
    freq["share_of_transcripts"] = (freq["transcripts"] / max(n_transcripts, 1)).round(3)
    freq["active"] = show["active"].astype(bool).values
    return freq


def _quotes(coded: pd.DataFrame, pairs: pd.DataFrame, codes: pd.DataFrame, cols: list[str], quotes_per_cell: int) -> pd.DataFrame:
    """The passages most coders agreed on first, then the model's most confident; template
    order of codes, matrix order of cells."""
    ranked = pairs.assign(_pos=pairs["code_id"].map(codes["position"]), _cell=pairs["cell"].map({c: i for i, c in enumerate(cols)}))
    ranked = ranked.sort_values(["_pos", "_cell", "accepted", "coders", "confidence", "transcript", "start"],
                                ascending=[True, True, False, False, False, True, True], na_position="last")
    quotes = ranked.groupby(["code_id", "cell"], sort=False).head(quotes_per_cell).copy()
    # Who accepted each quoted passage (only for the few quoted: a join per passage is slow at scale).
    acc = coded[(coded["status"] == "accepted") & coded["segment_id"].isin(quotes["segment_id"])]
    who = acc.groupby(["segment_id", "code_id"])["coder"].agg(lambda c: ", ".join(sorted(set(c))))
    quotes["who"] = [who.get((s, c), "") for s, c in zip(quotes["segment_id"], quotes["code_id"])]
    quotes["code_path"] = quotes["code_id"].map(codes["path"])
    quotes["status"] = quotes["accepted"].map({True: "accepted", False: "suggested"})
    quotes = quotes[["code_id", "code_path", "cell", "transcript", "speaker", "start", "text", "status", "who", "coders", "confidence"]]
    return quotes.rename(columns={"who": "coder_names"}).reset_index(drop=True)


def _cells(names: pd.Series, attr_frame: pd.DataFrame, attributes: list[str]) -> pd.Series:
    if not attributes:
        return pd.Series(ALL_CELL, index=names.values)
    a = attr_frame.reindex(names.values)[attributes].fillna("(none)").astype(str)
    return a.apply(lambda r: " / ".join(r.values), axis=1)


def _cell_order(cells: pd.Series, attr_frame: pd.DataFrame, attributes: list[str]) -> list[str]:
    """Cells sorted attribute by attribute (so sector / level reads sector-major)."""
    if not attributes:
        return [ALL_CELL]
    return sorted(set(cells), key=lambda c: tuple(c.split(" / ")))


def heatmap(report: Report, path: str | Path, *, title: str | None = None) -> Path:
    """PNG heatmap of the share of each cell's transcripts with each code, coded cells
    annotated k/N; rows grouped by top-level theme (named on the right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    ensure_parent(path)
    shares = report.shares
    n_rows, n_cols = max(shares.shape[0], 1), max(shares.shape[1], 1)
    parts = [str(p).split(PATH_SEP) for p in shares.index]
    row_labels = [_short(PATH_SEP.join(p[1:]) or p[0], 62) for p in parts]
    col_labels = [_short(c, 30) for c in shares.columns]
    themes = [p[0] for p in parts]

    # Inches, laid out by hand: tight_layout would draw every text twice, and there can be
    # hundreds of them.
    cell_w, cell_h, char_w = 0.95, 0.27, 0.062
    left = 0.3 + char_w * max((len(s) for s in row_labels), default=4)
    right = 0.4 + 1.2 * char_w * max((len(t) for t in themes), default=4)
    bottom = 1.3 + 0.6 * char_w * max((len(s) for s in col_labels), default=4)
    top = 0.75
    w, h = left + cell_w * n_cols + right, bottom + cell_h * n_rows + top
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / w, bottom / h, cell_w * n_cols / w, cell_h * n_rows / h))
    values = shares.to_numpy(dtype=float) if shares.size else [[0.0] * n_cols]
    im = ax.imshow(values, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.tick_params(length=0)
    sizes = report.cell_sizes.reindex(shares.columns).fillna(0).astype(int).to_numpy()
    for i in range(shares.shape[0]):
        for j in range(shares.shape[1]):
            v = float(shares.iat[i, j])
            if v > 0:
                k = int(round(v * sizes[j]))
                ax.text(j, i, f"{k}/{sizes[j]}", ha="center", va="center", fontsize=7, color="white" if v > 0.55 else "black")
    # Top-level themes: a rule between groups, the theme's name on the right.
    starts = [i for i in range(len(themes)) if i == 0 or themes[i] != themes[i - 1]]
    for i in starts[1:]:
        ax.axhline(i - 0.5, color="#555555", linewidth=0.8)
    ends = starts[1:] + [len(themes)]
    side = ax.secondary_yaxis("right")
    side.set_yticks([(a + b - 1) / 2 for a, b in zip(starts, ends)], [_short(themes[a], 40) for a in starts], fontsize=8, fontweight="bold")
    side.tick_params(length=0)
    by = " × ".join(report.attributes) if report.attributes else "all transcripts"
    label = title or f"Share of transcripts with the code, by {by} (k/N: k of the cell's N transcripts)"
    if report.scope.get("suggested_passages"):
        label += "\nincludes machine suggestions not yet reviewed by a coder"
    fig.suptitle(label, fontsize=10, x=0.02, ha="left", y=1 - 0.25 / h, va="top")
    cax = fig.add_axes((left / w, 0.5 / h, min(3.0, cell_w * n_cols) / w, 0.13 / h))
    fig.colorbar(im, cax=cax, orientation="horizontal").set_label("share of the cell's transcripts", fontsize=8)
    cax.tick_params(labelsize=7)
    fig.savefig(path)
    return path


def _short(s: str, n: int) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


# Links, images, HTML, emphasis, table breaks, headings, lists, and Streamlit's $math$ and
# :colour[...] directives: every character that can start one is escaped.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md_escape(text: str) -> str:
    """Untrusted text (a transcript's passage, a code's or coder's name) as literal Markdown on
    one line: no links, images, HTML, formatting, headings or lists; shows as typed. The one
    escape of the app and the reports."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _n(n: int, singular: str, plural: str | None = None) -> str:
    """"1 coded passage", "2 coded passages"."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def report_markdown(rep: Report, *, project_name: str = "") -> str:
    s = rep.scope
    by = " × ".join(md_escape(a) for a in rep.attributes) or "all transcripts"
    lines = [f"# Coding report{': ' + md_escape(project_name) if project_name else ''}", ""]
    scope = {"accepted": "accepted codings only", "suggested": "accepted codings and machine suggestions",
             "all": "accepted codings and machine suggestions (rejections listed, not counted)"}.get(s.get("include"), "")
    lines.append(f"Exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by coder-assist; scope: {scope}.  ")
    lines.append(f"{_n(s['transcripts'], 'transcript')}; {_n(s['accepted_passages'], 'coded passage')} accepted by "
                 f"{_n(len(s['coders']), 'coder')}{' (' + ', '.join(md_escape(c) for c in s['coders']) + ')' if s['coders'] else ''}.")
    if s["suggested_passages"]:
        thr = f" with confidence ≥ {s['threshold']}" if s.get("threshold") is not None else ""
        lines += ["", f"**Includes {_n(s['suggested_passages'], 'machine suggestion')}{thr} (model v{s['model_version']}) that no coder "
                  "has reviewed.** They are counted in the matrix and marked *machine suggestion* in the quotes; they are not "
                  "a coder's judgement."]
    lines += ["", "A passage counts once per code, however many coders accepted it. Share of transcripts: the transcripts "
              "of the cell with at least one passage coded with the code, out of the cell's transcripts.", ""]

    sugg = s.get("include") != "accepted"
    lines += ["## Code frequencies", "", "| code | passages | accepted | " + ("machine suggestions | " if sugg else "")
              + "transcripts | share of transcripts |", "| --- | ---: | ---: | " + ("---: | " if sugg else "") + "---: | ---: |"]
    for r in rep.frequencies.itertuples(index=False):
        retired = " (retired)" if not r.active else ""
        lines.append(f"| {md_escape(r.code_path)}{retired} | {r.passages} | {r.accepted_passages} | "
                     + (f"{r.suggested_passages} | " if sugg else "") + f"{r.transcripts} | {r.share_of_transcripts:.0%} |")

    cols = list(rep.counts.columns)
    header = "| code | " + " | ".join(f"{md_escape(c)} (n={rep.cell_sizes[c]})" for c in cols) + " |"
    sep = "| --- |" + " ---: |" * len(cols)
    lines += ["", f"## Codes × {by}", "", "### Coded passages", "", header, sep]
    for path, row in rep.counts.iterrows():
        lines.append(f"| {md_escape(path)} | " + " | ".join(str(int(v)) for v in row.values) + " |")
    lines += ["", "### Share of the cell's transcripts with the code", "", header, sep]
    for path, row in rep.shares.iterrows():
        lines.append(f"| {md_escape(path)} | " + " | ".join(f"{v:.0%}" for v in row.values) + " |")
    lines += ["", "![Heatmap: share of transcripts with each code per cell](heatmap.png)", ""]

    lines += ["## Quotes per code and cell", ""]
    if rep.quotes.empty:
        lines.append("No coded passages in this scope.")
    for path, q_code in rep.quotes.groupby("code_path", sort=False):
        lines += [f"### {md_escape(path)}", ""]
        for cell, q in q_code.groupby("cell", sort=False):
            n = int(rep.counts.at[path, cell]) if cell in rep.counts.columns and path in rep.counts.index else len(q)
            lines.append(f"**{md_escape(cell)}** ({n} passage{'s' if n != 1 else ''})")
            lines.append("")
            for r in q.itertuples(index=False):
                if r.status == "accepted":
                    who = f"accepted by {md_escape(r.coder_names)}"
                else:
                    who = f"*machine suggestion*, confidence {r.confidence:.2f}, not reviewed"
                lines.append(f"> {md_escape(_short(r.text, 400))}  ")
                lines.append(f"> — {md_escape(r.transcript)}, {md_escape(r.speaker)} ({who})")
                lines.append("")
    return "\n".join(lines) + "\n"
