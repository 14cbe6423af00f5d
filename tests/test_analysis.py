"""Analysis package: hand-made results.jsonl files whose right answers are known."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from analysis.claims.verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_RUN, evaluate_claims
from analysis.loading.cells import summarize
from analysis.loading.load import NoResultsError, load_results
from analysis.ranking.rankings import rank_all
from analysis.ranking.selectors import cell_agreement, selector_table
from analysis.report.paper import main, write_report
from growth.widen import registry

PROBE_LAG, CONT_LAG = 16, 128
E, P, A, S, W, C = registry.default_pool()


def cand_rows(
    cand: str,
    seed: int,
    step: int,
    regime: str,
    *,
    kl: float | None = None,
    gap: float | None = None,
    probe_loss: float = 3.0,
    probe_kl: float | None = None,
    probe_rms: float | None = None,
    escape: float | None = None,
    auc: float | None = None,
    diverged_at: int | None = None,
    exp: str = "t",
    config_hash: str = "h0",
) -> list[dict]:
    """The rows one grow run writes for one candidate in one cell (schema of docs/results_schema.md)."""
    rows = []

    def add(metric: str, lag: int, value: float | None) -> None:
        rows.append(
            {
                "experiment": exp,
                "seed": seed,
                "growth_step": step,
                "candidate": cand,
                "regime": regime,
                "lag": lag,
                "metric": metric,
                "value": value,
                "config_hash": config_hash,
                "versions": {"jax": "0.7.0"},
            }
        )

    if kl is not None:
        add("token_kl", 0, kl)
        add("loss_gap", 0, gap)
        add("max_logit_diff", 0, math.sqrt(kl))
    add("eval_loss", 0, 3.2 + (gap or 0.0))
    for lag in range(PROBE_LAG, CONT_LAG + 1, PROBE_LAG):
        if diverged_at is not None and lag >= diverged_at:
            add("eval_loss", diverged_at, None)
            add("diverged", diverged_at, 1.0)
            return rows
        add("eval_loss", lag, probe_loss - 0.002 * (lag - PROBE_LAG))
        if lag == PROBE_LAG:
            for metric, value in (("probe_kl", probe_kl), ("probe_rms", probe_rms), ("probe_escape", escape)):
                if value is not None:
                    add(metric, lag, value)
    if auc is not None:
        add("auc", CONT_LAG, auc)
        add("final_loss", CONT_LAG, probe_loss - 0.002 * (CONT_LAG - PROBE_LAG))
    return rows


ZERO = {E: (1e-13, 1e-7), P: (2e-12, -2e-7), A: (5e-13, 0.0), S: (3e-12, 3e-7), W: (2.5, 1.2)}
PROBE_LOSS = {E: 3.00, P: 3.01, A: 3.02, S: 3.03, W: 5.0, C: 3.005}
AUC = {
    "deterministic": {S: 2.90, E: 2.95, P: 2.96, A: 2.97, C: 2.98, W: 4.5},
    "stochastic": {E: 2.93, P: 2.94, A: 2.95, C: 2.97, S: 2.99, W: 4.6},
}
PROBE_KL = {
    "deterministic": {S: 0.01, E: 0.02, P: 0.03, A: 0.04, W: 3.0},
    "stochastic": {E: 0.01, P: 0.02, A: 0.03, S: 0.05, W: 3.0},
}
PROBE_RMS = {E: 0.1, P: 0.2, A: 0.3, S: 0.5, W: 2.0}
ESCAPE = {E: 0.0, P: 0.02, A: 0.01, S: 0.3}
PAPER_POOLS = {(0, 1000): [E, P, A, S, W, C], (0, 2000): [E, P, A, S, W, C], (1, 2000): [E, P, S]}


def paper_rows(probe_loss_override: dict | None = None) -> list[dict]:
    """A paper-shaped grid in which claims 1-6 all hold by construction."""
    rows = []
    for (seed, step), pool in PAPER_POOLS.items():
        for regime in ("deterministic", "stochastic"):
            for cand in pool:
                kl, gap = ZERO.get(cand, (None, None))
                loss = (probe_loss_override or {}).get((seed, step, regime, cand), PROBE_LOSS[cand])
                rows += cand_rows(
                    cand,
                    seed,
                    step,
                    regime,
                    kl=kl,
                    gap=gap,
                    probe_loss=loss,
                    probe_kl=PROBE_KL[regime].get(cand),
                    probe_rms=PROBE_RMS.get(cand),
                    escape=ESCAPE.get(cand),
                    auc=AUC[regime][cand],
                )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Append rows the way a grow run does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def analyse(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """summary, ranks, auc agreement, claims: the pipeline without the figures (fast)."""
    summary = summarize(load_results(root).frame)
    ranks = rank_all(summary)
    agreement = cell_agreement(summary, "auc")
    claims = evaluate_claims(ranks, agreement, cell_agreement(summary, "probe_eval_loss"))
    return summary, ranks, agreement, claims


def rank_of(
    ranks: pd.DataFrame, stage: str, cand: str, seed: int = 0, step: int = 1000, regime: str = "deterministic"
) -> pd.Series:
    """The tidy rank row of one candidate."""
    sel = ranks[
        (ranks["stage"] == stage)
        & (ranks["candidate"] == cand)
        & (ranks["seed"] == seed)
        & (ranks["growth_step"] == step)
        & (ranks["regime"] == regime)
    ]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def verdicts(claims: pd.DataFrame, column: str = "verdict") -> dict[int, str]:
    """claim id -> verdict (statistical; column='point_verdict' for the verdict on means)."""
    return dict(zip(claims["claim_id"], claims[column], strict=True))


@pytest.fixture(scope="module")
def paper_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full report (figures included) of the paper-shaped grid, written once for the module."""
    root = tmp_path_factory.mktemp("paper")
    rows = paper_rows()
    # Split over two run directories, as two grow runs would write them.
    write_jsonl(root / "run_a" / "results.jsonl", [r for r in rows if r["seed"] == 0])
    write_jsonl(root / "run_b" / "nested" / "results.jsonl", [r for r in rows if r["seed"] == 1])
    return write_report(root)


# ---------------------------------------------------------------- loading


def test_duplicates_keep_last(tmp_path: Path) -> None:
    rows = cand_rows(E, 0, 1000, "deterministic", kl=0.0, gap=0.0, auc=3.5)
    rerun = cand_rows(E, 0, 1000, "deterministic", kl=0.0, gap=0.0, auc=3.1)
    write_jsonl(tmp_path / "results.jsonl", rows + rerun)
    results = load_results(tmp_path)
    auc = results.frame[results.frame["metric"] == "auc"]
    assert results.n_duplicates == len(rerun)
    assert auc["value"].tolist() == [3.1]


def test_no_results_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoResultsError, match=r"no results\.jsonl found under .*empty.*experiments\.grow"):
        write_report(tmp_path / "empty")
    assert main([str(tmp_path / "empty")]) == 2
    assert "experiments.grow" in capsys.readouterr().err


def test_missing_field_names_file_and_line(tmp_path: Path) -> None:
    row = cand_rows(E, 0, 1000, "deterministic", auc=3.0)[0]
    del row["metric"]
    write_jsonl(tmp_path / "results.jsonl", [row])
    with pytest.raises(ValueError, match=r"results\.jsonl:1: row lacks field\(s\) \['metric'\]"):
        load_results(tmp_path)


# ---------------------------------------------------------------- rankings


def test_ranks_winners_and_zero_step_ties(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "results.jsonl", paper_rows())
    _, ranks, _, _ = analyse(tmp_path)
    # deterministic AUC order: S < E < P < A < C < W
    expected = {S: 1, E: 2, P: 3, A: 4, C: 5, W: 6}
    assert {c: rank_of(ranks, "continuation", c)["rank"] for c in expected} == expected
    assert rank_of(ranks, "continuation", S)["winner"] and not rank_of(ranks, "continuation", E)["winner"]
    # probe lag is read from the data: eval loss at lag 16, E < C < P < A < S < W
    assert rank_of(ranks, "probe", E)["lag"] == PROBE_LAG
    assert [rank_of(ranks, "probe", c)["rank"] for c in (E, C, P, A, S, W)] == [1, 2, 3, 4, 5, 6]
    # Function-preserving candidates tie at lag 0 (float noise under the tolerance); continue_small is n/a.
    assert [rank_of(ranks, "zero_step", c)["rank"] for c in (E, P, A, S, W)] == [1, 1, 1, 1, 5]
    assert rank_of(ranks, "zero_step", C)["status"] == "n/a"


def test_diverged_candidate_ranked_last_and_shown(tmp_path: Path) -> None:
    rows = []
    for cand, auc in ((E, 2.9), (P, 3.0), (S, 3.1)):
        rows += cand_rows(cand, 0, 1000, "deterministic", kl=0.0, gap=0.0, probe_loss=auc, probe_kl=0.1, auc=auc)
    rows += cand_rows(W, 0, 1000, "deterministic", kl=2.0, gap=1.0, probe_loss=2.5, probe_kl=0.2, diverged_at=40)
    write_jsonl(tmp_path / "results.jsonl", rows)
    _, ranks, agreement, _ = analyse(tmp_path)
    cont = rank_of(ranks, "continuation", W)
    assert cont["status"] == "diverged" and cont["rank"] == 4 and not cont["winner"]
    # It diverged at lag 40, after the probe at 16: there it is still ranked on its (best) probe loss.
    assert rank_of(ranks, "probe", W)["status"] == "ok" and rank_of(ranks, "probe", W)["winner"]
    # Selectors only use candidates with an AUC: three here.
    assert set(agreement["n_candidates"]) == {3}
    out = write_report(tmp_path, figures=False)
    wide = pd.read_csv(out / "rankings.csv")
    det = wide[wide["regime"] == "deterministic"].iloc[0]
    assert "cont: 4 (diverged at lag 40)" in det[W]
    assert "cont: 1* (2.9000)" in det[E]
    assert "diverged at lag 40" in (out / "report.md").read_text()
    assert "4 (div.)" in (out / "rankings.tex").read_text()


def test_all_diverged_cell_has_no_winner(tmp_path: Path) -> None:
    rows = []
    for cand in (E, P):  # both blow up at lag 8, before the probe at 16
        rows += cand_rows(cand, 0, 1000, "stochastic", kl=0.0, gap=0.0, probe_kl=0.1, diverged_at=8)
        rows += cand_rows(cand, 0, 1000, "deterministic", kl=0.0, gap=0.0, probe_kl=0.1, auc=3.0)
    write_jsonl(tmp_path / "results.jsonl", rows)
    _, ranks, _, claims = analyse(tmp_path)
    for stage in ("probe", "continuation"):
        row = rank_of(ranks, stage, E, regime="stochastic")
        assert row["status"] == "diverged" and not row["winner"]
    assert rank_of(ranks, "zero_step", E, regime="stochastic")["status"] == "ok"
    c = claims.set_index("claim_id")
    assert c.loc[1, "verdict"] == FAILS and "first in 1/2 cells" in c.loc[1, "evidence"]
    assert c.loc[2, "verdict"] == FAILS


def test_missing_cells_are_not_run(tmp_path: Path) -> None:
    rows = []
    for cand, auc in ((E, 2.9), (P, 3.0), (W, 3.5)):
        rows += cand_rows(cand, 0, 1000, "deterministic", kl=0.1, gap=0.1, probe_loss=auc, probe_kl=0.1, auc=auc)
    for cand, auc in ((E, 2.9), (P, 3.0)):  # seed 1 lacks scratch_wide; no stochastic regime at all
        rows += cand_rows(cand, 1, 1000, "deterministic", kl=0.1, gap=0.1, probe_loss=auc, probe_kl=0.1, auc=auc)
    rows += [
        r
        for r in cand_rows(S, 1, 1000, "deterministic", kl=0.1, gap=0.1, probe_kl=0.1, auc=2.0)
        if r["metric"] != "auc"
    ]  # a run cut short: no auc row, no divergence
    write_jsonl(tmp_path / "results.jsonl", rows)
    _, ranks, _, claims = analyse(tmp_path)
    assert rank_of(ranks, "continuation", W, seed=1)["status"] == "not run"
    assert rank_of(ranks, "continuation", S, seed=1)["status"] == "not run"
    assert rank_of(ranks, "probe", S, seed=1)["status"] == "ok"
    assert rank_of(ranks, "continuation", E, regime="stochastic")["status"] == "not run"
    v = verdicts(claims)
    assert v[2] == NOT_RUN and v[5] == NOT_RUN and v[6] == NOT_RUN
    out = write_report(tmp_path, figures=False)
    wide = pd.read_csv(out / "rankings.csv")
    sto = wide[wide["regime"] == "stochastic"]
    assert len(sto) == 2 and sto[E].str.contains("cont: not run").all()
    assert wide[(wide["regime"] == "deterministic") & (wide["seed"] == 1)][W].iloc[0].count("not run") == 3
    claims_csv = pd.read_csv(out / "claims.csv")
    assert claims_csv.loc[claims_csv["claim_id"] == 2, "verdict"].iloc[0] == NOT_RUN


def test_replicates_are_mean_and_std(tmp_path: Path) -> None:
    rows = []
    for config_hash, shift in (("h0", 0.0), ("h1", 0.2)):
        for cand, auc in ((E, 2.9), (P, 3.0)):
            rows += cand_rows(cand, 0, 1000, "deterministic", kl=0.0, gap=0.0, auc=auc + shift, config_hash=config_hash)
    write_jsonl(tmp_path / "results.jsonl", rows)
    _, ranks, _, _ = analyse(tmp_path)
    row = rank_of(ranks, "continuation", E)
    assert row["value"] == pytest.approx(3.0) and row["value_std"] == pytest.approx(math.sqrt(0.02))
    assert row["n_runs"] == 2
    md = (write_report(tmp_path, figures=False) / "report.md").read_text()
    # Two replicates: the CI resamples them (means 2.9, 3.0 or 3.1); P is 0.1 worse in both, so not tied.
    assert "**1** (3.0000 [2.9000, 3.1000])" in md and "| 2 (3.1000 [3.0000, 3.2000])" in md


# ---------------------------------------------------------------- selectors


def test_kendall_tau_and_winner_pick_hand_computed(tmp_path: Path) -> None:
    # AUC order a < b < c < d. probe_kl order a < c < b < d: one discordant pair of six -> tau = 4/6.
    # probe_escape (higher = better) order d > c > b > a: fully reversed -> tau = -1, picks d (wrong).
    # probe_rms ties a and b at the best value -> picks {a, b}: half a hit.
    cells = {E: (2.0, 0.1, 0.1, 0.0), P: (2.1, 0.3, 0.1, 0.1), A: (2.2, 0.2, 0.5, 0.2), S: (2.3, 0.4, 0.9, 0.3)}
    rows = []
    for cand, (auc, kl, rms, esc) in cells.items():
        rows += cand_rows(
            cand, 0, 1000, "deterministic", kl=0.0, gap=0.0, probe_kl=kl, probe_rms=rms, escape=esc, auc=auc
        )
    rows += cand_rows(C, 0, 1000, "deterministic", auc=1.0)  # no probe_kl: left out of probe_kl's tau
    write_jsonl(tmp_path / "results.jsonl", rows)
    _, _, agreement, _ = analyse(tmp_path)
    by = agreement.set_index("signal")
    assert by.loc["probe_kl", "tau"] == pytest.approx(4 / 6)
    assert by.loc["probe_kl", "n_candidates"] == 4 and by.loc["probe_kl", "hit"] == 1.0
    assert by.loc["probe_escape", "tau"] == pytest.approx(-1.0) and by.loc["probe_escape", "hit"] == 0.0
    assert by.loc["probe_rms", "hit"] == 0.5
    assert by.loc["probe_rms_high", "tau"] == pytest.approx(-by.loc["probe_rms", "tau"])
    # All zero-step values are 0: constant, counted as tau 0. eval loss includes continue_small (5 candidates).
    assert by.loc["token_kl", "tau"] == 0.0 and by.loc["token_kl", "constant"]
    assert by.loc["probe_eval_loss", "n_candidates"] == 5
    table = selector_table(agreement).set_index(["signal", "regime"])
    assert table.loc[("probe_kl", "overall"), "n_cells"] == 1
    assert table.loc[("probe_kl", "overall"), "mean_tau"] == pytest.approx(4 / 6)
    assert table.loc[("probe_kl", "stochastic"), "n_cells"] == 0


def test_selectors_csv_overall_is_mean_over_cells(paper_report: Path) -> None:
    sel = pd.read_csv(paper_report / "selectors.csv").set_index(["signal", "regime"])
    # escape vs AUC: deterministic +1/3 in each of 3 cells; stochastic -2/3, -2/3 (seed 0) and -1 (seed 1).
    assert sel.loc[("probe_escape", "deterministic"), "mean_tau"] == pytest.approx(1 / 3, abs=1e-4)
    assert sel.loc[("probe_escape", "stochastic"), "mean_tau"] == pytest.approx(-7 / 9, abs=1e-4)
    assert sel.loc[("probe_escape", "overall"), "mean_tau"] == pytest.approx((1 / 3 - 7 / 9) / 2, abs=1e-4)
    assert sel.loc[("probe_escape", "overall"), "n_cells"] == 6
    assert sel.loc[("probe_kl", "overall"), "mean_tau"] == pytest.approx(1.0)
    assert sel.loc[("probe_kl", "overall"), "hit_rate"] == pytest.approx(1.0)
    # token_kl: 4 tied preserving candidates + scratch_wide last: tau-b = 4 / sqrt(4 * 10); seed 1 is constant.
    assert sel.loc[("token_kl", "deterministic"), "mean_tau"] == pytest.approx(2 * (4 / math.sqrt(40)) / 3, abs=1e-4)


# ---------------------------------------------------------------- claims


def test_claims_hold_on_paper_shaped_grid(paper_report: Path) -> None:
    claims = pd.read_csv(paper_report / "claims.csv")
    assert verdicts(claims, "point_verdict") == {i: HOLDS for i in range(1, 7)}
    # One run per cell and no per-sequence losses: no CI, so the noise cannot be ruled out.
    assert verdicts(claims) == {i: INCONCLUSIVE for i in range(1, 7)}
    c2 = claims.set_index("claim_id").loc[2]
    assert "first in 3/3 cells" in c2["evidence"] and "all paper cells present" in c2["evidence"]
    assert c2["claim"].startswith("exact-copy ranks first in stochastic 128-step continuations")


def test_claim1_fails_when_another_candidate_wins_a_probe(tmp_path: Path) -> None:
    override = {(1, 2000, "stochastic", P): 2.99}  # perturbative beats exact_copy's 3.00 at lag 16
    write_jsonl(tmp_path / "results.jsonl", paper_rows(override))
    _, _, _, claims = analyse(tmp_path)
    row = claims.set_index("claim_id").loc[1]
    assert row["point_verdict"] == FAILS and row["verdict"] == INCONCLUSIVE
    assert "first in 5/6 cells" in row["evidence"] and "stochastic seed 1 @ 2000 (rank 2" in row["evidence"]


def test_claims_fail_when_numbers_disagree(tmp_path: Path) -> None:
    rows = paper_rows()
    for r in rows:  # structured_non_clone loses deterministic continuation; escape then no longer helps it
        if r["candidate"] == S and r["regime"] == "deterministic" and r["metric"] == "auc":
            r["value"] = 3.5
    write_jsonl(tmp_path / "results.jsonl", rows)
    _, _, _, claims = analyse(tmp_path)
    v = verdicts(claims, "point_verdict")
    assert v[3] == FAILS and v[6] == FAILS and v[1] == HOLDS and v[2] == HOLDS


# ---------------------------------------------------------------- outputs


def test_rankings_tex_has_one_row_per_seed_and_step(paper_report: Path) -> None:
    tex = (paper_report / "rankings.tex").read_text()
    tables = re.findall(r"\\midrule\n(.*?)\\bottomrule", tex, flags=re.S)
    assert len(tables) == 2  # deterministic, stochastic
    for body in tables:
        rows = [line for line in body.strip().splitlines() if line.endswith(r"\\")]
        assert [tuple(r.split(" & ")[:2]) for r in rows] == [("0", "1000"), ("0", "2000"), ("1", "2000")]
        assert all(r.count(" & ") == 2 + 3 * 6 - 1 for r in rows)
    assert r"exact\_copy" in tex and "exact_copy" not in tex
    assert r"\toprule" in tex and r"\textbf{1}" in tex
    # scratch_wide was not run for seed 1: its three cells say so.
    assert tex.count("--") >= 6


def test_figures_are_png_and_linked(paper_report: Path) -> None:
    figures = paper_report / "figures"
    names = {p.name for p in figures.glob("*.png")}
    assert names == {
        "rank_heatmap.png",
        "probe_vs_auc.png",
        "preservation_vs_auc.png",
        "curves_t_seed0_step1000.png",
        "curves_t_seed0_step2000.png",
        "curves_t_seed1_step2000.png",
    }
    md = (paper_report / "report.md").read_text()
    for name in names:
        path = figures / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 0.01, f"{name} looks blank"
        assert f"](figures/{name})" in md
    assert not list(paper_report.rglob("*.tmp")), "atomic writes left temp files behind"


def test_report_md_has_tables_and_aggregate(paper_report: Path) -> None:
    md = (paper_report / "report.md").read_text()
    assert (
        "## Claims (SPEC section 1)" in md
        and "| 1 | exact-copy ranks first in every 16-step probe | inconclusive" in md
    )
    assert "### Regime: deterministic" in md and "**continuation** (lag 128" in md
    assert "**probe** (lag 16" in md
    # By growth step over seeds: exact_copy at 2000, stochastic continuation, is rank 1 for both seeds.
    assert "| 2000 | continuation | 1 ± 0.00 (2.9300 ± 0.0000), n=2" in md
    wide = pd.read_csv(paper_report / "rankings.csv")
    assert len(wide) == 6 and set(wide["winner_continuation"]) == {S, E}


def test_cli_with_a_missing_regime_and_no_probes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = []
    for cand, auc in ((E, 2.9), (P, 3.0)):  # deterministic only, and no probe_* metric anywhere
        rows += cand_rows(cand, 0, 1000, "deterministic", kl=0.0, gap=0.0, auc=auc)
    write_jsonl(tmp_path / "res" / "results.jsonl", rows)
    stale = tmp_path / "rep" / "figures" / "curves_old_seed9_step1.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from an earlier report")
    assert main([str(tmp_path / "res"), "--out", str(tmp_path / "rep")]) == 0
    out = tmp_path / "rep"
    assert not stale.exists()
    assert str(out / "report.md") in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "probe signals vs AUC: not run" in md
    assert not (out / "figures" / "probe_vs_auc.png").exists()
    curves = out / "figures" / "curves_t_seed0_step1000.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curves.stat().st_size > 10_000
    sel = pd.read_csv(out / "selectors.csv").set_index(["signal", "regime"])
    assert sel.loc[("probe_kl", "overall"), "n_cells"] == 0 and sel.loc[("token_kl", "overall"), "n_cells"] == 1
    wide = pd.read_csv(out / "rankings.csv")
    assert wide.loc[wide["regime"] == "deterministic", E].iloc[0] == (
        "L0: 1* (kl 0.00e+00, gap +0.00e+00) | probe: not run | cont: 1* (2.9000)"
    )


def test_experiments_are_labelled_and_filterable(tmp_path: Path) -> None:
    rows = []
    for exp in ("smoke", "paper_cpu"):
        for cand, auc in ((E, 2.9), (P, 3.0)):
            rows += cand_rows(cand, 0, 1000, "deterministic", kl=0.0, gap=0.0, probe_kl=0.1, auc=auc, exp=exp)
    write_jsonl(tmp_path / "results.jsonl", rows)
    tex = (write_report(tmp_path, figures=False) / "rankings.tex").read_text()
    body = re.findall(r"\\midrule\n(.*?)\\bottomrule", tex, flags=re.S)[0].strip().splitlines()
    assert [r.split(" & ")[:3] for r in body] == [[r"paper\_cpu", "0", "1000"], ["smoke", "0", "1000"]]
    out = write_report(tmp_path, tmp_path / "only_smoke", experiments=["smoke"], figures=False)
    assert set(pd.read_csv(out / "rankings.csv")["experiment"]) == {"smoke"}
    with pytest.raises(NoResultsError, match="found \\['paper_cpu', 'smoke'\\]"):
        write_report(tmp_path, experiments=["nope"], figures=False)
