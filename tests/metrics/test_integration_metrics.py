import numpy as np
import pytest

from crossomics.metrics import integration_metrics, modality_mixing

TYPES = ["B", "T", "NK", "Mono"]


def _joint_embedding(rng, n_per_type=40, modality_offset=0.0):
    """Two modalities of the same cells, with well-separated cell types."""
    type_index = np.repeat(np.arange(len(TYPES)), n_per_type)
    cell_type = np.array(TYPES)[type_index]
    rna = 12.0 * np.eye(len(TYPES), 8)[type_index] + rng.normal(size=(type_index.size, 8))
    atac = rna + 0.3 * rng.normal(size=rna.shape) + modality_offset
    latent = np.vstack([rna, atac])
    labels = np.concatenate([cell_type, cell_type])
    modality = np.repeat(["rna", "atac"], cell_type.size)
    return latent, labels, modality


def test_well_mixed_separated_types_score_high():
    latent, labels, modality = _joint_embedding(np.random.default_rng(0))
    scores = integration_metrics(latent, labels, modality)
    assert scores["nmi"] > 0.9
    assert scores["ari"] > 0.9
    assert scores["cell_type_asw"] > 0.8
    assert scores["modality_mixing_asw"] > 0.85
    assert scores["graph_connectivity"] == 1.0
    assert scores["modality_mixing"] > 0.9
    assert scores["modality_mixing"] == modality_mixing(latent, labels=labels, groups=modality)


def test_separated_modalities_score_low_mixing():
    latent, labels, modality = _joint_embedding(np.random.default_rng(1), modality_offset=6.0)
    scores = integration_metrics(latent, labels, modality)
    assert scores["modality_mixing_asw"] < 0.3
    assert scores["modality_mixing"] < 0.05
    # each type splits into an rna and an atac component of equal size
    assert scores["graph_connectivity"] == pytest.approx(0.5)


def test_single_modality_raises():
    latent, labels, _ = _joint_embedding(np.random.default_rng(2))
    with pytest.raises(ValueError, match="at least two"):
        integration_metrics(latent, labels, np.repeat("rna", labels.size))
    with pytest.raises(ValueError, match="labels has 10 entries"):
        integration_metrics(latent, labels[:10], np.repeat("rna", labels.size))
