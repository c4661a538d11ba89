"""Label transfer between modalities by a k-nearest-neighbour vote in a joint embedding."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.neighbors import KNeighborsClassifier

from ._inputs import as_embedding, as_labels


def transfer_labels(
    reference: ArrayLike,
    reference_labels: ArrayLike,
    query: ArrayLike,
    k: int = 15,
    weighted: bool = True,
) -> np.ndarray:
    """Predict labels of query cells by a vote of their ``k`` nearest reference cells.

    With ``weighted=True`` each neighbour votes with weight ``1 / distance`` and the label with the
    largest total weight wins (MinNet's "max weighted vote"); a query cell that coincides with
    reference cells takes their label. With ``weighted=False`` it is a plain majority vote (the
    scCross paper uses 5 neighbours). Distances are Euclidean in the joint embedding.

    Parameters
    ----------
    reference
        Embedding of the annotated cells (e.g. RNA), shape ``(n_reference, n_dims)``.
    reference_labels
        Label of each reference cell, length ``n_reference``.
    query
        Embedding of the cells to annotate (e.g. ATAC), shape ``(n_query, n_dims)``.
    k
        Number of neighbours that vote.
    weighted
        Weight votes by inverse distance.

    Returns
    -------
    Predicted label per query cell, length ``n_query``, with the values of ``reference_labels``.

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import transfer_labels
    >>> reference = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> transfer_labels(reference, ["B", "B", "T", "T"], np.array([[0.2, 0.1], [4.9, 5.2]]), k=2)
    array(['B', 'T'], dtype='<U1')
    """
    return vote_labels(reference, reference_labels, query, k=k, weighted=weighted)[0]


def vote_labels(
    reference: ArrayLike,
    reference_labels: ArrayLike,
    query: ArrayLike,
    k: int = 15,
    weighted: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`transfer_labels` plus each prediction's confidence.

    The confidence is the winning label's share of the (inverse-distance weighted) votes of
    the ``k`` neighbours: 1.0 when all neighbours agree, about ``1 / n_labels`` when they
    split evenly. Arguments as :func:`transfer_labels`.

    Returns
    -------
    ``(labels, confidence)``, both of length ``n_query``.
    """
    reference = as_embedding(reference, "reference")
    query = as_embedding(query, "query")
    reference_labels = as_labels(reference_labels, reference.shape[0], "reference_labels")
    if query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"reference has {reference.shape[1]} dimensions but query has {query.shape[1]}; "
            "both must be embedded in the same joint space"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= reference.shape[0]:
        raise ValueError(
            f"k must be between 1 and the number of reference cells ({reference.shape[0]}), got {k!r}; "
            "pass an integer, e.g. k=15"
        )
    classifier = KNeighborsClassifier(n_neighbors=k, weights="distance" if weighted else "uniform")
    classifier.fit(reference, reference_labels)
    votes = classifier.predict_proba(query)
    winner = votes.argmax(1)
    return classifier.classes_[winner], votes[np.arange(len(winner)), winner]


def label_transfer_accuracy(
    reference: ArrayLike,
    reference_labels: ArrayLike,
    query: ArrayLike,
    query_labels: ArrayLike,
    k: int = 15,
    weighted: bool = True,
) -> float:
    """Accuracy of kNN label transfer from reference cells to query cells.

    Labels are predicted with :func:`transfer_labels` and compared with the known query labels
    (MinNet paper, "Benchmark criteria").

    Parameters
    ----------
    reference
        Embedding of the annotated cells, shape ``(n_reference, n_dims)``.
    reference_labels
        Label of each reference cell.
    query
        Embedding of the cells whose labels are predicted, shape ``(n_query, n_dims)``.
    query_labels
        True label of each query cell, used only for scoring.
    k
        Number of neighbours that vote.
    weighted
        Weight votes by inverse distance.

    Returns
    -------
    Fraction of query cells whose predicted label equals their true label, in ``[0, 1]``;
    **higher is better**. Random embeddings score about the frequency of the query's labels
    among the reference labels (``1 / n_types`` for balanced types).

    Examples
    --------
    >>> import numpy as np
    >>> from crossomics.metrics import label_transfer_accuracy
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(["B", "T"], 50)
    >>> rna = np.where(labels[:, None] == "B", 0.0, 10.0) + rng.normal(size=(100, 5))
    >>> atac = rna + 0.5 * rng.normal(size=rna.shape)
    >>> label_transfer_accuracy(rna, labels, atac, labels)
    1.0
    """
    query = as_embedding(query, "query")
    query_labels = as_labels(query_labels, query.shape[0], "query_labels")
    predicted = transfer_labels(reference, reference_labels, query, k=k, weighted=weighted)
    return float(np.mean(predicted == query_labels))
