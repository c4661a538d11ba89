import numpy as np
import pytest

from crossomics.metrics import modality_mixing


def _clouds(rng, n_first, n_second, offset=0.0, n_dims=10):
    first = rng.normal(size=(n_first, n_dims))
    second = rng.normal(size=(n_second, n_dims))
    second[:, 0] += offset
    return first, second


def test_separated_clouds_score_near_zero():
    rna, atac = _clouds(np.random.default_rng(0), 300, 300, offset=8.0)
    assert modality_mixing({"rna": rna, "atac": atac}) < 0.05


def test_identical_distributions_score_near_one():
    rna, atac = _clouds(np.random.default_rng(1), 300, 300)
    assert modality_mixing({"rna": rna, "atac": atac}) == pytest.approx(1.0, abs=0.1)


def test_unequal_sizes_still_score_near_one():
    small, large = _clouds(np.random.default_rng(2), 100, 400)
    assert modality_mixing([small, large]) == pytest.approx(1.0, abs=0.1)
    # the raw cross-modal share is far from one half for both modalities: the expectation differs
    assert modality_mixing([small, large], n_neighbors=30) == pytest.approx(1.0, abs=0.1)


def test_partial_overlap_lies_between():
    rna, atac = _clouds(np.random.default_rng(3), 300, 300, offset=2.0)
    assert 0.3 < modality_mixing([rna, atac]) < 0.8


def test_three_modalities():
    rng = np.random.default_rng(4)
    mixed = [rng.normal(size=(n, 6)) for n in (100, 200, 300)]
    assert modality_mixing(mixed) == pytest.approx(1.0, abs=0.1)
    # one modality apart: it scores 0 and the two mixed ones lose a third of their partners
    apart = [mixed[0] + 50.0, mixed[1], mixed[2]]
    assert modality_mixing(apart) < 0.6


def test_stacked_array_with_groups_matches_dict():
    rna, atac = _clouds(np.random.default_rng(5), 120, 80, offset=1.0)
    stacked = np.vstack([rna, atac])
    groups = np.repeat(["rna", "atac"], [120, 80])
    assert modality_mixing(stacked, groups=groups) == modality_mixing({"rna": rna, "atac": atac})


def test_labels_set_the_expectation_within_each_type():
    rng = np.random.default_rng(6)
    # type A is measured in both modalities and mixes; type B only in RNA, far away
    a_rna, a_adt = _clouds(rng, 150, 150)
    b_rna = 30.0 + rng.normal(size=(150, 10))
    embeddings = {"rna": np.vstack([a_rna, b_rna]), "adt": a_adt}
    labels = {"rna": np.repeat(["A", "B"], 150), "adt": np.repeat("A", 150)}
    without = modality_mixing(embeddings)
    within = modality_mixing(embeddings, labels=labels)
    assert within == pytest.approx(1.0, abs=0.1)
    assert without < 0.85
    stacked_labels = np.concatenate([labels["rna"], labels["adt"]])
    assert modality_mixing(embeddings, labels=stacked_labels) == within
    # no type shared by two modalities: no expectation to compare with
    assert np.isnan(
        modality_mixing(embeddings, labels={"rna": np.repeat("B", 300), "adt": np.repeat("A", 150)})
    )


def test_differs_from_ilisi_on_unequal_sizes():
    scib_metrics = pytest.importorskip("scib_metrics")
    from crossomics.metrics._neighbors import exact_neighbors

    small, large = _clouds(np.random.default_rng(2), 100, 400)
    stacked = np.vstack([small, large])
    ilisi = float(scib_metrics.ilisi_knn(exact_neighbors(stacked, 90), np.repeat([0, 1], [100, 400])))
    # iLISI measures how even the local modality proportions are, so 1:4 mixed perfectly scores low
    assert ilisi < 0.5
    assert modality_mixing([small, large]) > 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"embeddings": {"rna": np.zeros((30, 5)), "atac": np.zeros((30, 4))}},
            r"embeddings\['atac'\] has 4 dimensions",
        ),
        (
            {"embeddings": [np.zeros((5, 3)), np.ones((5, 3))]},
            "n_neighbors=15 needs at least 16 cells.*hold 10",
        ),
        (
            {"embeddings": {"rna": np.full((30, 3), np.nan), "atac": np.zeros((30, 3))}},
            r"embeddings\['rna'\] has NaN",
        ),
        ({"embeddings": {"rna": np.zeros((30, 3))}}, "at least two"),
        ({"embeddings": np.zeros((40, 3))}, "pass groups="),
        ({"embeddings": np.zeros((40, 3)), "groups": np.repeat("rna", 40)}, "single value"),
        ({"embeddings": np.zeros((40, 3)), "groups": np.repeat(["a", "b"], 10)}, "groups has 20 entries"),
        ({"embeddings": [np.zeros((20, 3)), np.ones((20, 3))], "groups": np.zeros(40)}, "groups is only for"),
        ({"embeddings": [np.zeros((20, 3)), np.ones((20, 3))], "n_neighbors": 0}, "positive integer"),
        (
            {
                "embeddings": {"rna": np.zeros((20, 3)), "atac": np.ones((20, 3))},
                "labels": {"rna": np.zeros(20)},
            },
            r"no entry for modalities \['atac'\]",
        ),
        (
            {"embeddings": [np.zeros((20, 3)), np.ones((20, 3))], "labels": np.zeros(39)},
            "labels has 39 entries",
        ),
    ],
)
def test_input_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        modality_mixing(**kwargs)
