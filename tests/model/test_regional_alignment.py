"""The regional alignment of SCCROSS's returned joint embedding."""

import numpy as np
import pytest

import crossomics as co
from crossomics.model._regional_alignment import (
    apply_regional_alignment,
    fit_regional_alignment,
    regional_alignment_from_file,
)


def _two_regions(rng, n=300):
    """Two cell populations far apart; in each, ATAC sits at its own offset with its own spread."""
    centres = np.array([[-20.0, 0.0, 0.0, 0.0], [20.0, 0.0, 0.0, 0.0]])
    region = np.repeat([0, 1], n // 2)
    rna = centres[region] + rng.normal(size=(n, 4))
    offsets = np.array([[0.0, 3.0, 0.0, 0.0], [0.0, -3.0, 2.0, 0.0]])
    atac = centres[region] + offsets[region] + rng.normal(size=(n, 4)) * np.array([1.0, 0.4, 2.0, 1.0])
    return rna, atac, region


def test_alignment_moves_each_region_onto_its_common_mean_and_spread():
    rng = np.random.default_rng(0)
    rna, atac, region = _two_regions(rng)
    before = co.metrics.modality_mixing([rna, atac])
    rounds = fit_regional_alignment({"rna": rna, "atac": atac}, n_regions=2, seed=0)
    aligned = {m: apply_regional_alignment(z, m, rounds)[0] for m, z in (("rna", rna), ("atac", atac))}
    for r in (0, 1):
        rna_r, atac_r = aligned["rna"][region == r], aligned["atac"][region == r]
        np.testing.assert_allclose(rna_r.mean(0), atac_r.mean(0), atol=0.15)
        np.testing.assert_allclose(rna_r.std(0), atac_r.std(0), rtol=0.1)
    after = co.metrics.modality_mixing(list(aligned.values()))
    # measured: 0.08 -> 1.02
    assert before < 0.2 and after > 0.8
    # the populations stay apart: the map moves modalities, not cell states
    assert np.abs(aligned["atac"][region == 0, 0].mean() - aligned["atac"][region == 1, 0].mean()) > 30


def test_a_region_one_modality_lacks_stays_where_it_is():
    rng = np.random.default_rng(1)
    rna, atac, region = _two_regions(rng)
    atac = atac[region == 0]  # ATAC has no cells of the second population
    rounds = fit_regional_alignment({"rna": rna, "atac": atac}, n_regions=2, seed=0)
    aligned_rna = apply_regional_alignment(rna, "rna", rounds)[0]
    np.testing.assert_allclose(aligned_rna[region == 1], rna[region == 1], atol=1e-3)


def test_stretch_nan_rows_and_file_round_trip():
    rng = np.random.default_rng(2)
    rna, atac, _ = _two_regions(rng)
    rounds = fit_regional_alignment({"rna": rna, "atac": atac}, n_regions=2, seed=0)
    query = atac.copy()
    query[3] = np.nan
    aligned, stretch = apply_regional_alignment(query, "atac", rounds)
    assert np.isnan(aligned[3]).all() and np.isfinite(np.delete(aligned, 3, axis=0)).all()
    # ATAC's second coordinate is narrower than RNA's (0.4 against 1): it is stretched
    assert np.nanmedian(stretch[:, 1]) > 1.5
    assert (np.delete(stretch, 3, axis=0) > 0).all()
    # as a model file holds it: tensors, read back to the same map
    torch = pytest.importorskip("torch")
    as_file = [
        {
            "centroids": torch.as_tensor(f["centroids"]),
            "temperature": f["temperature"],
            "target": torch.as_tensor(f["target"]),
            "mean": {m: torch.as_tensor(v) for m, v in f["mean"].items()},
            "ratio": {m: torch.as_tensor(v) for m, v in f["ratio"].items()},
        }
        for f in rounds
    ]
    restored = regional_alignment_from_file(as_file)
    np.testing.assert_array_equal(
        apply_regional_alignment(atac, "atac", restored)[0], apply_regional_alignment(atac, "atac", rounds)[0]
    )
    assert regional_alignment_from_file(None) is None


def test_each_batch_of_a_modality_is_moved_by_its_own_map():
    rng = np.random.default_rng(3)
    rna, atac, region = _two_regions(rng, n=600)
    # RNA comes in two batches that sit apart along the fourth coordinate
    rna_batch = np.tile([0, 1], len(rna) // 2)
    rna = rna + np.where(rna_batch == 1, 4.0, -4.0)[:, None] * np.array([0.0, 0.0, 0.0, 1.0])
    pooled = fit_regional_alignment({"rna": rna, "atac": atac}, n_regions=2, seed=0)
    by_batch = fit_regional_alignment(
        {"rna": rna, "atac": atac}, n_regions=2, seed=0, batches={"rna": rna_batch, "atac": None}
    )

    def mixing_of_batch_one(rounds):
        aligned = apply_regional_alignment(rna, "rna", rounds, rna_batch)[0]
        return co.metrics.modality_mixing(
            [aligned[rna_batch == 1], apply_regional_alignment(atac, "atac", rounds)[0]]
        )

    # measured: pooled 0.57, by batch 1.00
    assert mixing_of_batch_one(pooled) < 0.7 and mixing_of_batch_one(by_batch) > 0.9
    # a batch the map was not fitted on (a query's) takes the modality's pooled map
    unseen = np.full(len(rna), 7)
    np.testing.assert_array_equal(
        apply_regional_alignment(rna, "rna", by_batch, unseen)[0],
        apply_regional_alignment(rna, "rna", [{**f, "batch_mean": {}} for f in by_batch])[0],
    )
    with pytest.raises(ValueError, match="batch codes of 'rna'"):
        fit_regional_alignment({"rna": rna, "atac": atac}, 2, batches={"rna": rna_batch[:10]})
