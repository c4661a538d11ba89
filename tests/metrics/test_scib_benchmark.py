import numpy as np
import pytest
import scanpy as sc
from anndata import AnnData

from crossomics.datasets import bmmc_multiome
from crossomics.metrics import scib_benchmark
from crossomics.metrics._scib_benchmark import _benchmark_anndata

FAST_METRICS = [
    "Isolated labels",
    "KMeans NMI",
    "KMeans ARI",
    "Silhouette label",
    "BRAS",
    "Graph connectivity",
    "Batch correction",
    "Bio conservation",
    "Total",
]


@pytest.fixture(scope="module")
def bmmc_embeddings():
    """Joint embeddings of the BMMC Multiome cells of the four largest types (rna rows, then atac rows).

    "aligned" puts each ATAC cell near its RNA profile's PCA coordinates; "shuffled" gives the ATAC
    rows the coordinates of random other cells. Few types keep JAX compilation (one per type) short.
    """
    rna = bmmc_multiome().mod["rna"]
    largest = rna.obs["cell_type"].value_counts().index[:4]
    rna = rna[rna.obs["cell_type"].isin(largest)].copy()
    rna.X = rna.X.astype(np.float32)
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    pca = sc.pp.pca(rna.X.toarray(), n_comps=20, random_state=0)
    assert pca.shape[0] == 300
    rng = np.random.default_rng(0)
    aligned_atac = pca + 0.5 * rng.normal(size=pca.shape)
    embeddings = {
        "aligned": np.vstack([pca, aligned_atac]),
        "shuffled": np.vstack([pca, aligned_atac[rng.permutation(pca.shape[0])]]),
    }
    labels = np.concatenate([rna.obs["cell_type"].to_numpy()] * 2)
    modality = np.repeat(["rna", "atac"], pca.shape[0])
    return embeddings, labels, modality


def test_scib_benchmark_on_real_data(bmmc_embeddings):
    embeddings, labels, modality = bmmc_embeddings
    table = scib_benchmark(embeddings, labels, modality, progress_bar=False)
    assert list(table.columns) == FAST_METRICS
    assert list(table.index) == ["aligned", "shuffled", "Metric Type"]
    scores = table.drop(index="Metric Type").astype(float)
    assert ((scores >= 0) & (scores <= 1)).all().all()
    assert scores.loc["aligned", "Total"] > scores.loc["shuffled", "Total"]
    assert scores.loc["aligned", "Bio conservation"] > scores.loc["shuffled", "Bio conservation"]


def test_anndata_input_is_read_like_a_dict(bmmc_embeddings):
    embeddings, labels, modality = bmmc_embeddings
    adata = AnnData(obs={"cell_type": labels, "modality": modality})
    for name, emb in embeddings.items():
        adata.obsm[name] = emb
    from_anndata = _benchmark_anndata(adata, "cell_type", "modality", ["aligned"], None)
    from_dict = _benchmark_anndata({"aligned": embeddings["aligned"]}, labels, modality, None, None)
    assert list(from_anndata.obsm) == list(from_dict.obsm) == ["aligned"]
    np.testing.assert_array_equal(from_anndata.obsm["aligned"], from_dict.obsm["aligned"])
    assert from_anndata.obs.equals(from_dict.obs)
    # the caller's object is left alone
    assert list(adata.obsm) == ["aligned", "shuffled"] and list(adata.obs) == ["cell_type", "modality"]


def test_scib_benchmark_rejects_bad_input():
    rng = np.random.default_rng(1)
    labels = np.repeat(["a", "b"], 100)
    modality = np.tile(["rna", "atac"], 100)
    with pytest.raises(ValueError, match="different numbers of rows"):
        scib_benchmark({"x": rng.normal(size=(200, 3)), "y": rng.normal(size=(199, 3))}, labels, modality)
    with pytest.raises(ValueError, match="modality has 3 entries"):
        scib_benchmark({"x": rng.normal(size=(200, 3))}, labels, modality[:3])
    with pytest.raises(ValueError, match="more than 90 rows"):
        scib_benchmark({"x": rng.normal(size=(50, 3))}, labels[:50], modality[:50])
    with pytest.raises(ValueError, match="must name an obs column"):
        scib_benchmark(AnnData(obs={"m": modality}), labels, "m")
