"""In-silico perturbation on the Triana bone-marrow Abseq data (RNA + ADT), Old -> Young.

SCCROSS is trained on RNA (422 genes) + ADT (97 proteins) without a batch key (donor is nested in
condition, so correcting for it would remove the age signal). ``model.perturb(modality="rna",
groupby="condition", perturb_group="Old", reference_group="Young", target="adt")`` ranks every
gene by how far scaling it by 1 +/- 0.5 in Old cells moves them toward Young cells in the joint
latent, and cross-generates protein from the Old cells with the top genes perturbed.

Compared with plain differential expression (scanpy t-test and Wilcoxon, Old vs Young, on
log-normalised RNA of all cells): overlap of the top-k genes (hypergeometric p), Spearman between
the perturbation score and |DE score|, and whether the chosen direction agrees with the DE sign
(a gene higher in Young should be perturbed "up"). Protein: mean log-normalised generated ADT with
vs without the perturbation, compared with the measured Young - Old difference (Spearman, top-k
overlap).

The data are AGPL and not vendored: pass ``--data`` (default ``../shared/data/triana_bm.h5mu``
relative to the repository). ``python benchmarks/perturbation_bone_marrow.py [--quick]`` writes
``results/perturbation_bone_marrow[_quick].{csv,md,png}``.
"""

from __future__ import annotations

import argparse

import _common as cm
import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc
from scipy.stats import hypergeom, spearmanr

COND, OLD, YOUNG = "condition", "Old", "Young"


def de_scores(adata, method: str) -> pd.Series:
    """Scanpy score of Young vs Old per feature (positive: higher in Young), on log-normalised data."""
    a = adata.copy()
    a.X = a.X.astype(np.float32)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a.obs[COND] = a.obs[COND].astype(str).astype("category")
    sc.tl.rank_genes_groups(a, COND, groups=[YOUNG], reference=OLD, method=method, n_genes=a.n_vars)
    names = pd.DataFrame(a.uns["rank_genes_groups"]["names"])[YOUNG]
    scores = pd.DataFrame(a.uns["rank_genes_groups"]["scores"])[YOUNG].astype(float)
    return pd.Series(scores.to_numpy(), index=names.to_numpy()).reindex(adata.var_names)


def overlap(a: list, b: list, n_total: int) -> tuple[int, float]:
    k = len(set(a) & set(b))
    return k, float(hypergeom.sf(k - 1, n_total, len(a), len(b)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", default=str(cm.DEFAULT_TRIANA))
    p.add_argument("--n-cells", type=int, default=None, help="training cells (0 = all 9,663)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--n-target-genes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cm.set_threads(1)
    epochs, pretrain = cm.sccross_epochs(args, full_epochs=40)
    n_cells = args.n_cells if args.n_cells is not None else (800 if args.quick else 0)
    max_cells = 100 if args.quick else 1000

    with md.set_options(pull_on_update=False):
        mdata = md.read_h5mu(args.data)
    rna, adt = mdata.mod["rna"], mdata.mod["adt"]
    rows = np.arange(rna.n_obs)
    if n_cells and n_cells < rna.n_obs:
        rows, _ = cm.stratified_split(rna.obs[COND].astype(str), n_cells / rna.n_obs, args.seed)
    rna, adt = rna[rows].copy(), adt[rows].copy()
    model, train_s = cm.train_paired_sccross({"rna": rna, "adt": adt}, None, epochs, pretrain, seed=args.seed)
    print(f"trained on {len(rows)} cells in {train_s:.0f} s", flush=True)
    import time

    start = time.perf_counter()
    scores, generated = model.perturb(
        "rna",
        groupby=COND,
        perturb_group=OLD,
        reference_group=YOUNG,
        target="adt",
        n_target_genes=args.n_target_genes,
        max_cells=max_cells,
        seed=args.seed,
    )
    perturb_s = time.perf_counter() - start
    genes = list(rna.var_names)
    ranked = list(scores.sort_values("rank").index)
    rows_out = []
    de = {m: de_scores(rna, m) for m in ("t-test", "wilcoxon")}
    for method, s in de.items():
        by_abs = list(s.abs().sort_values(ascending=False).index)
        rho = spearmanr(scores.loc[genes, "best_score"], s.loc[genes].abs()).statistic
        for k in (10, 20, 50):
            top = ranked[:k]
            n_ov, p_ov = overlap(top, by_abs[:k], len(genes))
            expected_dir = np.where(s.loc[top] > 0, "up", "down")
            agree = float(np.mean(scores.loc[top, "best_direction"].to_numpy() == expected_dir))
            rows_out.append(
                {
                    "comparison": f"perturb top-{k} vs DE {method} top-{k} (|score|)",
                    "overlap": n_ov,
                    "expected_random": k * k / len(genes),
                    "hypergeom_p": p_ov,
                    "spearman_score_vs_abs_de": rho,
                    "direction_agrees_with_de": agree,
                }
            )

    # proteins: perturbed vs unperturbed generation compared with measured Young - Old
    def lognorm_mean(X):
        return cm.log_normalize(X).mean(0)

    gen_diff = pd.Series(
        lognorm_mean(generated.X) - lognorm_mean(generated.layers["unperturbed"]), index=adt.var_names
    )
    young = adt.obs[COND].astype(str).to_numpy() == YOUNG
    meas_diff = pd.Series(lognorm_mean(adt.X[young]) - lognorm_mean(adt.X[~young]), index=adt.var_names)
    meas_t = de_scores(adt, "t-test")
    prot_rows = []
    for name, ref in (("mean difference", meas_diff), ("t-test score", meas_t)):
        rho = spearmanr(gen_diff, ref.loc[gen_diff.index]).statistic
        for k in (10, 20):
            top_gen = list(gen_diff.abs().sort_values(ascending=False).index[:k])
            top_ref = list(ref.abs().sort_values(ascending=False).index[:k])
            n_ov, p_ov = overlap(top_gen, top_ref, len(gen_diff))
            sign = float(np.mean(np.sign(gen_diff.loc[top_gen]) == np.sign(ref.loc[top_gen])))
            prot_rows.append(
                {
                    "measured Young-Old": name,
                    "k": k,
                    "overlap_top_k_abs": n_ov,
                    "expected_random": k * k / len(gen_diff),
                    "hypergeom_p": p_ov,
                    "spearman_all_proteins": rho,
                    "sign_agreement_top_k": sign,
                }
            )
    table = pd.DataFrame(rows_out)
    prot = pd.DataFrame(prot_rows)
    top_table = scores.sort_values("rank").head(20)[
        ["best_score", "best_direction", "score_up", "score_down"]
    ]
    top_table = top_table.assign(de_t=de["t-test"].loc[top_table.index]).reset_index()
    stem = cm.RESULTS / ("perturbation_bone_marrow" + ("_quick" if args.quick else ""))
    prot.to_csv(stem.with_name(stem.name + "_proteins.csv"), index=False)
    scores.to_csv(stem.with_name(stem.name + "_scores.csv"))
    import matplotlib.pyplot as plt

    import crossomics as co

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    co.pl.perturbation_scores(scores, n_top=20, ax=axes[0])
    axes[1].scatter(meas_diff, gen_diff.loc[meas_diff.index], s=10)
    for g in gen_diff.abs().sort_values(ascending=False).index[:8]:
        axes[1].annotate(g, (meas_diff[g], gen_diff[g]), fontsize=7)
    axes[1].axhline(0, lw=0.5, c="k")
    axes[1].axvline(0, lw=0.5, c="k")
    axes[1].set(
        xlabel="measured Young - Old (mean log-norm ADT)",
        ylabel="generated perturbed - unperturbed",
        title="proteins",
    )
    cm.save_figure(fig, stem.with_name(stem.name + ".png"), dpi=100)
    settings = {
        "mode": "quick" if args.quick else "full",
        "seed": args.seed,
        "train_cells": len(rows),
        "epochs": epochs,
        "pretrain_epochs": pretrain,
        "train_s": round(train_s, 1),
        "batch_size": 128,
        "perturbed_old_cells": generated.n_obs,
        "fold": 0.5,
        "n_target_genes": args.n_target_genes,
        "perturb_s": round(perturb_s, 1),
        "baseline_distance": scores.attrs.get("baseline_distance"),
    }
    cm.write_report(
        stem,
        "In-silico perturbation Old -> Young, Triana bone marrow (RNA + ADT)",
        settings,
        [
            ("Perturbation ranking vs differential expression (RNA)", table),
            (
                "Generated protein response vs measured Young - Old",
                prot.to_markdown(index=False, floatfmt=".3f"),
            ),
            ("Top-20 perturbation genes", top_table.to_markdown(index=False, floatfmt=".4f")),
            (
                "Notes",
                "Scores: decrease of the mean cosine distance of the Old cells to the Young centroid in "
                "the joint latent. DE scores are Young vs Old (positive = higher in Young). Protein table in "
                f"`{stem.name}_proteins.csv`, all gene scores in `{stem.name}_scores.csv`.",
            ),
        ],
    )
    return table


if __name__ == "__main__":
    main()
