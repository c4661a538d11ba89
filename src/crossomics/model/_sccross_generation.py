"""Cross-modal generation, simulation and in-silico perturbation for SCCROSS."""

from __future__ import annotations


class SCCROSSGenerationMixin:
    """Generation methods of :class:`crossomics.SCCROSS` (eq. 14-16 and the perturbation scores)."""
