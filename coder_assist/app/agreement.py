"""Inter-coder reliability: two coders, or the model and a coder, and the blind double-coding
workflow (a reliability sample coded by a second coder who sees nobody else's coding).

The unit of agreement
---------------------
Decisions are partial: a coder who accepted code X on a segment and never looked at code Y did
not say "not Y". So, per code, an *item* is a segment on which both raters gave a verdict on
that code:

* ``accept`` is "yes", ``reject`` is "no"; ``skip`` and no decision are no verdict, and the
  segment is not an item for that code.
* The model gives a verdict on every (segment, leaf code) pair: "yes" when the active model
  version stored a suggestion for the pair (suggestions are stored only at or above the code's
  threshold), "no" otherwise.
* In a reliability sample, a coder who *completed* a segment (answered it in blind mode, even
  with "no code applies") gave a verdict on every code there: "yes" for the codes ticked in
  their latest answer, "no" for all the others. On a sample, the items are exactly the sample's
  segments that both raters completed (the model completes every segment). The answer is a
  snapshot: codings changed later (say, after the coders discussed their disagreements) do
  not move the reliability figures; answering the segment again in blind mode does.

``exclude_uncoded`` drops segments neither rater said "yes" to for any code: long stretches of
text nobody codes make "both no" the bulk of the table and inflate percent agreement (and kappa
with it, when prevalence is not extreme). Figures are reported with and without, so say which.

Per code: percent agreement, Cohen's kappa, Krippendorff's alpha (nominal, ``krippendorff``
package). Overall, two poolings: the mean of the per-code kappas / alphas (each code counts
once, codes where kappa is undefined left out), and one pooled table of every (segment, code)
item (frequent codes weigh more). Kappa and alpha are ``None`` where undefined: no items, or
every answer the same (chance agreement is then already perfect).

For more than two raters (reference data such as AnnoMI's 10 annotators), :func:`fleiss_kappa`
and :func:`krippendorff_alpha` take an items x raters table of categories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..core.template import PATH_SEP
from ..core.errors import ProjectError
from ..store import reliability as store_
from ..store.project import Project, now
from ..ml.statistics import binary_figures, cohen_kappa, fleiss_kappa, krippendorff_alpha, percent_agreement  # noqa: F401  (re-exported)

MODEL = "(model)"  # the rater name of the active model version in reports (not a name a coder types)


# --------------------------------------------------------------------------- raters' verdicts


def _check_coder(project: Project, coder: str) -> str:
    name = (coder or "").strip()
    if not name:
        raise ProjectError(f"{project.folder}: a coder's name is needed")
    return name


def coders(project: Project) -> list[str]:
    """Everyone who has recorded a decision or a reliability answer, by name."""
    return sorted(store_.decision_and_answer_coders(project))


def _leaf_ids(project: Project) -> list[str]:
    return list(project.code_paths(active=True, leaves=True))


def coder_verdicts(project: Project, coder: str) -> pd.DataFrame:
    """The coder's current yes/no verdicts: columns segment_id, code_id, value (1 accept, 0
    reject). Skips and undone decisions give no verdict."""
    cur = project.current_decisions(_check_coder(project, coder))
    cur = cur[cur["action"].isin(["accept", "reject"])]
    return pd.DataFrame({
        "segment_id": cur["segment_id"].astype(int),
        "code_id": cur["code_id"].astype(str),
        "value": cur["action"].eq("accept").astype(int),
    }).reset_index(drop=True)


def model_yes(project: Project) -> set[tuple[int, str]]:
    """(segment, code) pairs the active model version suggested (at or above its threshold)."""
    mv = project.latest_model_version()
    if mv is None:
        raise ProjectError(f"{project.folder}: the project has no model suggestions yet (run 'coder-assist suggest {project.folder}')")
    return store_.suggested_pairs(project, mv)


def _grid(segments: Iterable[int], codes: Sequence[str], yes: set[tuple[int, str]]) -> pd.DataFrame:
    """Every (segment, code) pair of the given segments and codes; value 1 for the pairs in ``yes``."""
    segs = sorted({int(s) for s in segments})
    idx = pd.MultiIndex.from_product([segs, list(codes)], names=["segment_id", "code_id"])
    value = idx.isin(list(yes)) if yes and len(idx) else np.zeros(len(idx), dtype=bool)
    return idx.to_frame(index=False).assign(value=value.astype(int))


# --------------------------------------------------------------------------- reliability samples


def draw_sample(project: Project, share: float, *, seed: int = 0, name: str | None = None, created_by: str | None = None) -> int:
    """Draw a reliability sample: ``share`` of each transcript's segments (at least one per
    transcript), at random with a fixed ``seed``, whether coded, suggested or not. The same
    project, share and seed give the same sample. Returns the sample id."""
    if not (0 < share <= 1):
        raise ProjectError(f"{project.folder}: the sample share must be above 0 and at most 1, not {share}")
    segs = store_.segments_in_reading_order(project)
    if not segs:
        raise ProjectError(f"{project.folder}: the project has no segments to sample")
    rng = np.random.default_rng(seed)
    by_t: dict[str, list[int]] = {}
    for sid, _tid, tname in segs:
        by_t.setdefault(tname, []).append(int(sid))
    chosen: list[int] = []
    for tname in sorted(by_t):  # a fixed order so the seed alone decides the draw
        ids = by_t[tname]
        k = min(len(ids), max(1, math.floor(share * len(ids) + 0.5)))  # half up, not Python's half to even
        chosen += sorted(int(x) for x in rng.choice(ids, size=k, replace=False))
    order = rng.permutation(len(chosen))  # coded in a shuffled order, not transcript by transcript
    return store_.add_sample(project, name, share, seed, created_by, [chosen[i] for i in order], now())


def samples(project: Project) -> pd.DataFrame:
    """Reliability samples with their size and who has completed how much."""
    return store_.samples(project)


def find_sample(project: Project, ref: str | int) -> int:
    """A sample's id from its id or its name."""
    ref = str(ref).strip()
    found = store_.sample_id_of(project, ref)
    if found is None:
        raise ProjectError(f"{project.folder}: no reliability sample {ref!r} (list them with 'coder-assist reliability-sample {project.folder}')")
    return found


def completion(project: Project, sample_id: int) -> dict[str, int]:
    """Per coder, how many of the sample's segments they have answered."""
    return store_.completion(project, sample_id)


def _sample_row(project: Project, sample_id: int):
    row = store_.sample(project, sample_id)
    if row is None:
        raise ProjectError(f"{project.folder}: no reliability sample {sample_id}")
    return row


def sample_segments(project: Project, sample_id: int) -> pd.DataFrame:
    """The sample's segments in coding order: position, segment_id, transcript, speaker, text."""
    _sample_row(project, sample_id)
    return store_.sample_segments(project, sample_id)


def completed(project: Project, sample_id: int, coder: str) -> set[int]:
    """Segments of the sample this coder has answered (with codes or with "none applies")."""
    return store_.answered_segments(project, sample_id, _check_coder(project, coder))


def blind_codes(project: Project, segment_id: int, coder: str) -> list[str]:
    """The codes this coder holds accepted on a segment: their own coding, the only coding
    blind mode shows (never another coder's, never the model's)."""
    return store_.accepted_codes(project, segment_id, _check_coder(project, coder))


def record_answer(project: Project, sample_id: int, segment_id: int, coder: str, code_ids: Iterable[str]) -> int:
    """Record a coder's answer on one sample segment: the codes that apply (possibly none).

    In one transaction: an accept for each ticked code the coder does not already hold, a
    reject for each code they held accepted on the segment and have now unticked, and the
    answer itself (the record that the segment is complete, "no code" included). Answering
    again appends a new answer; the latest counts. Returns the answer's id.
    """
    coder = _check_coder(project, coder)
    codes = sorted(set(code_ids))
    leaves = set(_leaf_ids(project))
    bad = [c for c in codes if c not in leaves]
    if bad:
        raise ProjectError(f"{project.folder}: not a code of the template: {', '.join(bad)}")
    with project.transaction():
        _sample_row(project, sample_id)
        if not store_.in_sample(project, sample_id, segment_id):
            raise ProjectError(f"{project.folder}: segment {segment_id} is not in reliability sample {sample_id}")
        # Codes retired from the template are not on the form, so not unticked by leaving them.
        held = set(blind_codes(project, segment_id, coder)) & leaves
        for c in codes:
            if c not in held:
                project.record_decision(int(segment_id), c, "accept", coder, note=f"reliability sample {sample_id}")
        for c in sorted(held - set(codes)):
            project.record_decision(int(segment_id), c, "reject", coder, note=f"reliability sample {sample_id}")
        return store_.add_answer(project, sample_id, segment_id, coder, codes, now())


def sample_answers(project: Project, sample_id: int, coder: str) -> dict[int, list[str]]:
    """The coder's latest answer per sample segment: the codes ticked ([] = none applies)."""
    return store_.latest_answers(project, sample_id, _check_coder(project, coder))


def _answered_yes(project: Project, sample_id: int, coder: str) -> set[tuple[int, str]]:
    return {(s, c) for s, codes in sample_answers(project, sample_id, coder).items() for c in codes}


def sample_progress(project: Project, sample_id: int, coder: str) -> dict:
    """answered, total, and the next segment to answer (None when the coder is done)."""
    segs = sample_segments(project, sample_id)
    done = completed(project, sample_id, coder)
    todo = [int(s) for s in segs["segment_id"] if int(s) not in done]
    return {"answered": len(segs) - len(todo), "total": len(segs), "next": todo[0] if todo else None}


# --------------------------------------------------------------------------- agreement


@dataclass
class Agreement:
    """Agreement between two raters (``a``, ``b``; ``b`` may be :data:`MODEL`)."""

    a: str
    b: str
    unit: str
    exclude_uncoded: bool
    sample_id: int | None
    per_code: pd.DataFrame
    overall: dict
    disagreements: pd.DataFrame
    excluded_segments: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                return None if math.isnan(v) else round(float(v), 4)
            return v

        return {
            "raters": [self.a, self.b],
            "unit": self.unit,
            "exclude_uncoded": self.exclude_uncoded,
            "sample_id": self.sample_id,
            "excluded_segments": self.excluded_segments,
            "overall": {k: clean(v) for k, v in self.overall.items()},
            "per_code": [{k: clean(v) for k, v in r.items()} for r in self.per_code.to_dict("records")],
            "disagreements": [{k: clean(v) for k, v in r.items()} for r in self.disagreements.to_dict("records")],
            "notes": self.notes,
        }


PER_CODE_COLUMNS = ["code_id", "code_path", "n", "both_yes", "a_only", "b_only", "both_no", "percent_agreement", "kappa", "alpha"]


def _figures_of(items: pd.DataFrame, leaves: list[str], paths: dict[str, str]) -> tuple[pd.DataFrame, dict]:
    """Per code and overall figures of the items (segment, code, value_a, value_b)."""
    rows = []
    for code in leaves:
        g = items[items["code_id"] == code]
        rows.append({"code_id": code, "code_path": paths.get(code, code),
                     **binary_figures(g["value_a"].to_numpy(int), g["value_b"].to_numpy(int))})
    per_code = pd.DataFrame(rows, columns=PER_CODE_COLUMNS)
    pooled = binary_figures(items["value_a"].to_numpy(int), items["value_b"].to_numpy(int))
    kappas = [k for k in per_code["kappa"] if k is not None and not pd.isna(k)]
    alphas = [x for x in per_code["alpha"] if x is not None and not pd.isna(x)]
    overall = {
        "items": pooled["n"],
        "segments": int(items["segment_id"].nunique()) if len(items) else 0,
        "codes_with_items": int((per_code["n"] > 0).sum()),
        "pooled_percent_agreement": pooled["percent_agreement"],
        "pooled_kappa": pooled["kappa"],
        "pooled_alpha": pooled["alpha"],
        "mean_kappa": float(np.mean(kappas)) if kappas else None,
        "mean_alpha": float(np.mean(alphas)) if alphas else None,
        "codes_with_kappa": len(kappas),
    }
    return per_code, overall


def agreement(
    project: Project,
    a: str,
    b: str,
    *,
    sample_id: int | None = None,
    exclude_uncoded: bool = False,
) -> Agreement:
    """Agreement between coders ``a`` and ``b`` (``b`` = :data:`MODEL` for the active model
    version), per code and overall, on the items defined in the module docstring: with
    ``sample_id``, the sample's segments both completed; without, per code the segments on
    which both gave a verdict on that code."""
    a = _check_coder(project, a)
    b = _check_coder(project, b)
    if a == b:
        raise ProjectError(f"{project.folder}: agreement needs two different raters, not {a!r} twice")
    if a == MODEL:
        a, b = b, a
    leaves = _leaf_ids(project)
    yes_model = model_yes(project) if b == MODEL else None

    if sample_id is not None:
        row = _sample_row(project, sample_id)
        done_a = completed(project, sample_id, a)
        all_segs = set(sample_segments(project, sample_id)["segment_id"].astype(int))
        done_b = all_segs if b == MODEL else completed(project, sample_id, b)
        segs = done_a & done_b
        va = _grid(segs, leaves, _answered_yes(project, sample_id, a))
        vb = _grid(segs, leaves, yes_model if b == MODEL else _answered_yes(project, sample_id, b))
        items = va.merge(vb, on=["segment_id", "code_id"], suffixes=("_a", "_b"))
        unit = (f"every code on each segment of reliability sample {row['name']!r} that both completed "
                f"({len(segs)} of {len(all_segs)} segments); a code not ticked is 'no'")
    else:
        va = coder_verdicts(project, a)
        if b == MODEL:
            vb = _grid(va["segment_id"].unique(), leaves, yes_model)
            unit = f"per code, the segments {a} accepted or rejected that code on; the model says yes where it suggested the code"
        else:
            vb = coder_verdicts(project, b)
            unit = "per code, the segments on which both coders accepted or rejected that code (skips and untouched codes are no verdict)"
        items = va.merge(vb, on=["segment_id", "code_id"], suffixes=("_a", "_b"))
        items = items[items["code_id"].isin(leaves)]

    excluded = 0
    if exclude_uncoded and len(items):
        # "Coded" looks at every code on the segment, not only the items: a segment a coder
        # coded with X is not uncoded text when computing Y's table.
        yes_segs = set(items.loc[(items["value_a"] == 1) | (items["value_b"] == 1), "segment_id"].astype(int))
        if sample_id is None:
            yes_segs |= {int(s) for s in coder_verdicts(project, a).query("value == 1")["segment_id"]}
            yes_segs |= ({s for s, _ in yes_model} if b == MODEL else {int(s) for s in coder_verdicts(project, b).query("value == 1")["segment_id"]})
        keep = items["segment_id"].astype(int).isin(yes_segs)
        excluded = int(items.loc[~keep, "segment_id"].nunique())
        items = items[keep]

    paths = project.code_paths()
    per_code, overall = _figures_of(items, leaves, paths)
    notes = []
    if not len(items):
        notes.append("no items: the two raters have no verdict on the same (segment, code) pair")
    return Agreement(a, b, unit, exclude_uncoded, sample_id, per_code, overall,
                     _disagreements(project, items, a, b, paths), excluded, notes)


def _disagreements(project: Project, items: pd.DataFrame, a: str, b: str, paths: dict) -> pd.DataFrame:
    """One row per segment where the raters differ on at least one code: what each said."""
    cols = ["segment_id", "transcript", "speaker", "text", "both", "a_only", "b_only"]
    diff = items[items["value_a"] != items["value_b"]]
    if diff.empty:
        return pd.DataFrame(columns=cols)
    segs = store_.segment_rows(project, diff["segment_id"].unique())
    # What each said on those segments: the codes they differ on, and the codes both applied
    # there (context for the discussion).
    on = items[items["segment_id"].isin(diff["segment_id"])]
    on = on.assign(leaf=on["code_id"].map(lambda c: str(paths.get(c, c)).split(PATH_SEP)[-1]))
    said = {
        "both": on[(on["value_a"] == 1) & (on["value_b"] == 1)],
        "a_only": on[(on["value_a"] == 1) & (on["value_b"] == 0)],
        "b_only": on[(on["value_a"] == 0) & (on["value_b"] == 1)],
    }
    df = segs.set_index("segment_id")
    for name, part in said.items():
        df = df.join(part.groupby("segment_id")["leaf"].agg("; ".join).rename(name))
    df = df.fillna({name: "" for name in said}).reset_index().sort_values(["transcript", "idx"])
    return df[cols].reset_index(drop=True)


def format_report(rep: Agreement, max_disagreements: int = 20) -> str:
    """Plain-text report for the command line."""

    def f(v, pct=False):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "  -  "
        return f"{v:.0%}" if pct else f"{v:.2f}"

    o = rep.overall
    lines = [
        f"Agreement: {rep.a} vs {rep.b}" + (f" (reliability sample {rep.sample_id})" if rep.sample_id is not None else ""),
        f"Unit: {rep.unit}.",
    ]
    if rep.exclude_uncoded:
        lines.append(f"Segments neither rater coded are excluded ({rep.excluded_segments} left out).")
    lines += [
        f"Overall: {o['items']} items on {o['segments']} segments; pooled: agreement {f(o['pooled_percent_agreement'], True)}, "
        f"kappa {f(o['pooled_kappa'])}, alpha {f(o['pooled_alpha'])}; mean over {o['codes_with_kappa']} codes: "
        f"kappa {f(o['mean_kappa'])}, alpha {f(o['mean_alpha'])}",
        "",
        f"{'code':40s} {'n':>5s} {'yes/yes':>7s} {'a only':>6s} {'b only':>6s} {'no/no':>6s} {'agree':>6s} {'kappa':>6s} {'alpha':>6s}",
    ]
    for r in rep.per_code.itertuples():
        lines.append(f"{str(r.code_path).split(' > ')[-1][:40]:40s} {r.n:5d} {r.both_yes:7d} {r.a_only:6d} {r.b_only:6d} {r.both_no:6d} "
                     f"{f(r.percent_agreement, True):>6s} {f(r.kappa):>6s} {f(r.alpha):>6s}")
    lines.append(f"(a = {rep.a}, b = {rep.b})")
    d = rep.disagreements
    if len(d):
        lines += ["", f"Disagreements to discuss ({len(d)} segments{', first ' + str(max_disagreements) if len(d) > max_disagreements else ''}):"]
        for r in d.head(max_disagreements).itertuples():
            lines.append(f"- {r.transcript} [{r.speaker}] {str(r.text)[:160]!r}")
            lines.append(f"    {rep.a} only: {r.a_only or '-'} | {rep.b} only: {r.b_only or '-'}" + (f" | both: {r.both}" if r.both else ""))
    for n in rep.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)
