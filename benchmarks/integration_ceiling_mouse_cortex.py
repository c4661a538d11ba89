"""What the bundled SNARE-seq mouse cortex data allow: reference points for the integration targets.

The bundled data are sparse (median 83 ATAC fragments over 25,734 peaks and 247 RNA UMIs over
1,677 genes per cell). This study measures, without any deep model:

- how well cell types can be told apart *within* each modality: 3-fold cross-validated accuracy
  of a 15-NN and of a logistic-regression classifier trained on each modality's own labels
  (LSI-100 for ATAC, PCA-50 for RNA). Label transfer ATAC<-RNA cannot be expected to beat the
  ATAC column by much, whatever the integration;
- a *paired* linear reference: CCA fitted on the true pairs of a random half of the cells,
  FOSCTTM and label transfer on the other half (an integration that knows the pairing);
- the unpaired common-gene MNN prior of SCCROSS (:func:`crossomics.pp.mnn_prior`) at 10, 20
  and 50 components, on all cells.

``python benchmarks/integration_ceiling_mouse_cortex.py`` writes
``results/integration_ceiling_mouse_cortex.{csv,md}`` in about two minutes.
"""

from __future__ import annotations

import argparse

import _common as cm
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.cross_decomposition import CCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import crossomics as co

LABEL = "cell_type"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cm.set_threads(2)
    mdata = co.datasets.mouse_motor_cortex()
    labels = mdata["rna"].obs[LABEL].astype(str).to_numpy()

    atac = mdata["atac"].copy()
    co.pp.lsi(atac, n_components=101)
    atac_lsi = atac.obsm["X_lsi"][:, 1:]  # the first component follows sequencing depth
    rna = mdata["rna"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.scale(rna, max_value=10)
    sc.pp.pca(rna, n_comps=50, random_state=args.seed)
    rna_pca = rna.obsm["X_pca"]

    rows = []
    for modality, embedding in (("rna", rna_pca), ("atac", atac_lsi)):
        for name, classifier in (
            ("15-NN", KNeighborsClassifier(15)),
            ("logistic regression", LogisticRegression(max_iter=2000)),
        ):
            accuracy = cross_val_score(classifier, embedding, labels, cv=3).mean()
            rows.append(
                {"reference": f"{modality} own-label classifier ({name}, 3-fold CV)", "accuracy": accuracy}
            )

    order = np.random.default_rng(args.seed).permutation(len(labels))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    for n_components in (10, 20):
        cca = CCA(n_components=n_components, max_iter=1000).fit(rna_pca[train], atac_lsi[train])
        rna_cc, atac_cc = cca.transform(rna_pca[test], atac_lsi[test])
        rows.append(
            {
                "reference": f"paired CCA-{n_components} (fitted on true pairs of 50%, scored on the rest)",
                "foscttm": co.metrics.foscttm(rna_cc, atac_cc),
                "label_transfer": co.metrics.label_transfer_accuracy(
                    rna_cc, labels[test], atac_cc, labels[test]
                ),
            }
        )
    for n_comps in (10, 20, 50):
        prior = co.pp.mnn_prior(mdata, ["rna", "atac"], gene_annotation="mm10", n_comps=n_comps)
        rows.append(
            {
                "reference": f"unpaired MNN prior, {n_comps} components (all cells)",
                "foscttm": co.metrics.foscttm(prior["rna"], prior["atac"]),
                "label_transfer": co.metrics.label_transfer_accuracy(
                    prior["rna"], labels, prior["atac"], labels
                ),
            }
        )
    table = pd.DataFrame(rows)
    notes = (
        "Issue targets for SCCROSS on these data: FOSCTTM <= 0.10 and label transfer ATAC<-RNA >= "
        "0.85. A classifier trained on the ATAC cells' *own* labels reaches the accuracy above, and a "
        "linear integration that is *told* the pairing reaches the FOSCTTM above; both bound what an "
        "unpaired integration can show on this copy of the data."
    )
    cm.write_report(
        cm.RESULTS / "integration_ceiling_mouse_cortex",
        "What the mouse cortex data allow (integration reference points)",
        {"seed": args.seed, "cells": len(labels)},
        [("Reference points", table), ("Reading", notes)],
    )


if __name__ == "__main__":
    main()
