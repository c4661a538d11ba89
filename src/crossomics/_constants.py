"""One home for the names and numbers that several parts of crossomics share.

It imports nothing from crossomics, so every subpackage (``nn``, ``pp``, ``module``, ``train``,
``model``) may import it.
"""

# ---------------------------------------------------------------- minibatch keys
X_KEY = "x"
"""A modality's data rows in its minibatch dict (``{modality: {X_KEY: ..., BATCH_KEY: ...}}``)."""
BATCH_KEY = "batch"
"""A modality's batch codes in its minibatch dict."""
PRIOR_KEY = "prior"
"""The MNN prior rows of a modality's cells in its minibatch dict (training only)."""
FEATURES_KEY = "features"
"""The fixed encoder inputs of a modality's cells, computed once per training run."""
PAIRS_KEY = "pairs"
"""The truly paired cells of a combined minibatch; no modality may take this name."""

# ---------------------------------------------------------------- modality kinds
RNA, ATAC, PROTEIN, METHYLATION = "rna", "atac", "protein", "methylation"
MODALITY_KINDS = (RNA, ATAC, PROTEIN, METHYLATION)
"""What a modality can hold: it chooses the input projection and the common-gene view."""

# ---------------------------------------------------------------- normalisation
TARGET_SUM = 1e4
"""Per-cell total of log-normalisation, ``log1p(x / total * TARGET_SUM)`` (counts per 10k)."""
CLIP_VALUE = 10.0
"""Standardised values are clipped to ``[-CLIP_VALUE, CLIP_VALUE]`` (as ``scanpy.pp.scale(max_value=10)``)."""
STD_FLOOR = 1e-6
"""Standard deviations below this are treated as zero: the feature is constant (its std becomes
1, so it standardises to 0) or, where a division needs it, the std is floored to this value."""
