"""Simulation of matched multi-omics cells of one population for SCCROSS (paper eq. 15-16, Fig. 5)."""

from __future__ import annotations

from collections.abc import Sequence

import mudata
import numpy as np
import pandas as pd
import torch
from mudata import MuData

from crossomics._validation import check_positive_int
from crossomics.model._sccross_decoding import SCCROSSDecodingMixin
from crossomics.model._selection import group_labels


class SCCROSSSimulationMixin(SCCROSSDecodingMixin):
    """Simulation of :class:`crossomics.SCCROSS` (paper eq. 15-16, Fig. 5)."""

    @torch.inference_mode()
    def simulate(
        self,
        groupby: str,
        group: str,
        n_cells: int,
        modalities: Sequence[str] | None = None,
        output: str = "counts",
        seed: int = 0,
        batch_size: int | None = None,
        posterior_from: str | Sequence[str] | None = None,
        mdata: MuData | None = None,
    ) -> MuData:
        """Simulate matched multi-omics cells of one population (paper eq. 15-16, Fig. 5).

        Joint latents are drawn from the population's aggregate posterior: a mixture with one
        Gaussian ``q(z | x_i)`` per cell ``i`` of the group, over the group's cells in every
        modality of ``posterior_from`` that has ``groupby``. Every modality is then decoded from
        the *same* draw, so row ``k`` of each modality is one simulated cell. Library sizes are
        drawn from the group's observed totals of each modality. Vectorised: no per-cell Python
        loop.

        Which encodings define the population matters when the modalities tell cell types apart
        unequally. On the mouse cortex, ATAC encodings of astrocytes sit partly among
        neighbouring types, so fewer simulated astrocytes are classified as astrocytes when the
        mixture includes them than with ``posterior_from="rna"`` (measured in
        ``docs/concepts.md``, "Bidirectional aligners and the joint space").

        Parameters
        ----------
        groupby
            ``.obs`` column holding the population labels (in at least one modality).
        group
            The population to simulate.
        n_cells
            Number of simulated cells.
        modalities
            Modalities to generate: one name or a list (default: all).
        output
            ``"counts"``, ``"mean"``, ``"normalized"`` or ``"detection"`` (see
            :meth:`cross_generate`).
        seed
            Random seed.
        batch_size
            Cells per forward pass (default 1,024).
        posterior_from
            Modalities whose encodings of the group's cells form the mixture (default: all).
        mdata
            Cells that define the population (their modalities' features in any order);
            default: the model's data. A model loaded without data needs it.

        Returns
        -------
        MuData with one AnnData per modality, the same ``obs_names`` in each (paired cells).

        Examples
        --------
        >>> sim = model.simulate(groupby="cell_type", group="Astro", n_cells=500)
        >>> sim.mod["rna"].shape
        (500, 1677)
        """
        modalities, posterior_from = self._check_simulation(modalities, posterior_from, output, n_cells)
        self.module.eval()
        mean, log_var, libraries = self._group_posterior(
            groupby, group, modalities, posterior_from, batch_size, mdata
        )
        generator = torch.Generator().manual_seed(seed)
        z = _mixture_draws(mean, log_var, n_cells, generator)
        return self._simulated_mudata(
            z, modalities, libraries, output, generator, seed, groupby, group, batch_size
        )

    def _check_simulation(self, modalities, posterior_from, output: str, n_cells: int) -> tuple[list, list]:
        """The modalities to generate and those whose encodings form the mixture, as checked lists."""
        if modalities is None:
            modalities = list(self.modalities_)
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        for m in modalities:
            self._check_modality(m)
        self._check_output(output, modalities)
        self._check_if_trained(warn=True)
        check_positive_int(n_cells, "n_cells", 500)
        if posterior_from is None:
            posterior_from = list(self.modalities_)
        elif isinstance(posterior_from, str):
            posterior_from = [posterior_from]
        for m in posterior_from:
            self._check_modality(m)
        return modalities, posterior_from

    def _group_posterior(self, groupby, group, modalities, posterior_from, batch_size, mdata):
        """The population's aggregate posterior: posterior means and log-variances of the joint
        latent of the group's cells in every modality of ``posterior_from``, and the group's
        observed library sizes of each modality that has its cells."""
        means, log_vars, libraries = [], [], {}
        found_column = False
        available = list(mdata.mod) if mdata is not None else list(self._data)
        if not any(m in available for m in self.modalities_):
            raise ValueError(
                "this model holds no data (it was loaded without it); pass mdata= with the cells to simulate from"
            )
        for m in self.modalities_:
            if m not in available:
                continue
            adata = self._data_of(m, mdata)
            if groupby not in adata.obs:
                continue
            found_column = True
            rows = np.flatnonzero(group_labels(adata.obs[groupby]).to_numpy() == str(group))
            if not len(rows) or (m not in posterior_from and m not in modalities):
                continue
            X, _, _ = self._modality_data(m, mdata, rows)
            X = X[self._measured_cells(m, X)]
            if not X.shape[0]:
                continue
            libraries[m] = np.asarray(X.sum(1)).ravel()
            if m not in posterior_from:
                continue
            for x in self._batches(X, batch_size):
                encoded = self.module.encode(m, x, sample=False)
                means.append(encoded["z_mean"])
                log_vars.append(encoded["z_log_var"])
        if not found_column:
            raise ValueError(f"{groupby!r} is not an .obs column of any modality {self.modalities_}")
        if not means:
            where = "" if set(posterior_from) == set(self.modalities_) else f" of modalities {posterior_from}"
            raise ValueError(f"group {group!r} has no cells in column {groupby!r}{where}")
        return torch.cat(means), torch.cat(log_vars), libraries

    def _simulated_mudata(
        self, z, modalities, libraries, output, generator, seed, groupby, group, batch_size
    ) -> MuData:
        """Every modality decoded from the same draws ``z`` (row ``k`` is one simulated cell), with
        library sizes drawn from the group's observed totals (the training totals for a modality
        without the group's cells)."""
        n_cells = len(z)
        rng = np.random.default_rng(seed)
        names = [f"sim_{group}_{k}" for k in range(n_cells)]
        obs = pd.DataFrame({groupby: pd.Categorical([str(group)] * n_cells)}, index=names)
        mods = {}
        for m in modalities:
            observed = libraries.get(m)
            if observed is None:
                observed = self.library_sizes_[m]
            library = torch.as_tensor(rng.choice(observed, n_cells).astype(np.float32), device=z.device)
            step = batch_size or 1024
            values = [
                self._decode(m, z[i : i + step], 0, library[i : i + step], output, generator).cpu().numpy()
                for i in range(0, n_cells, step)
            ]
            mods[m] = self._generation_output(m, values, output, obs.copy(), {"simulated_group": str(group)})
        # the simulated cells are matched row by row; nothing to pull from the modalities
        with mudata.set_options(pull_on_update=False):
            return MuData(mods)


def _mixture_draws(mean: torch.Tensor, log_var: torch.Tensor, n_cells: int, generator) -> torch.Tensor:
    """``n_cells`` draws from the mixture of the Gaussians ``N(mean_i, exp(log_var_i))``, one
    component chosen uniformly per draw (``generator`` goes on to the decoders' draws)."""
    component = torch.randint(len(mean), (n_cells,), generator=generator)
    noise = torch.randn((n_cells, mean.shape[1]), generator=generator).to(mean.device)
    component = component.to(mean.device)
    return mean[component] + torch.exp(0.5 * log_var[component]) * noise
