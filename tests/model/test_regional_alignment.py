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
