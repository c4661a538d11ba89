"""crossomics.pl draws as scanpy does: stored palettes, show/save, readable legends and ticks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import crossomics as co


@pytest.fixture(scope="module")
def rna():
    adata = co.datasets.bmmc_multiome().mod["rna"][:300].copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    return adata


def _colors_by_label(ax) -> dict[str, np.ndarray]:
    return {c.get_label(): c.get_facecolor()[0][:3] for c in ax.collections}


def test_generated_cells_take_the_palette_scanpy_stored(rna):
    real, generated = rna[:150].copy(), rna[150:].copy()
    categories = real.obs["cell_type"].cat.categories
    # a palette of the user's own, stored where scanpy keeps it (sc.pl.umap(..., palette=...) does this)
    real.uns["cell_type_colors"] = [
        mcolors.to_hex(plt.cm.viridis(x)) for x in np.linspace(0, 1, len(categories))
    ]
    palette = dict(zip(categories, real.uns["cell_type_colors"], strict=True))
    before = generated.obs.copy()
    ax = co.pl.generated_vs_real_umap(real, generated, color="cell_type", show=False)
    drawn = _colors_by_label(ax)
    shared = set(generated.obs["cell_type"]) & set(categories)
    assert len(shared) >= 3
    for label in shared:
        np.testing.assert_allclose(drawn[label], mcolors.to_rgb(palette[label]), atol=1e-6)
    pd.testing.assert_frame_equal(generated.obs, before)
    legend = ax.get_legend()
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8
    ax.figure.canvas.draw()
    # the legend sits right of the data, not over the points
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1 - 1
    plt.close("all")


def test_title_names_the_comparison_and_expected_values_warn(rna):
    generated = rna[150:].copy()
    generated.uns["sccross_generation"] = {"output": "mean"}
    with pytest.warns(UserWarning, match="output='counts' to compare like with like"):
        ax = co.pl.generated_vs_real_umap(rna[:150], generated, show=False)
    assert ax.get_title().startswith("generated mean values")
    generated.uns["sccross_generation"] = {"output": "counts"}
    assert co.pl.generated_vs_real_umap(rna[:150], generated).get_title().startswith("generated counts")
    plt.close("all")


def test_save_writes_the_figure_and_show_returns_none(rna, tmp_path, monkeypatch):
    scores = pd.DataFrame(
        {"score_up": np.linspace(1, 0, 30), "score_down": np.linspace(0.5, -0.5, 30), "rank": np.arange(30)},
        index=[f"GENE{i:02d}" for i in range(30)],
    )
    path = tmp_path / "scores.png"
    ax = co.pl.perturbation_scores(scores, n_top=25, save=path)
    assert path.stat().st_size > 0
    ax.figure.canvas.draw()
    boxes = [label.get_window_extent() for label in ax.get_yticklabels()]
    assert len(boxes) == 25
    assert all(a.y0 >= b.y1 or b.y0 >= a.y1 for a, b in zip(boxes, boxes[1:], strict=False)), (
        "tick labels overlap"
    )
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["GENE00", "GENE01"]  # best first, on top
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    assert co.pl.perturbation_scores(scores, show=True) is None and shown == [True]
    plt.close("all")
