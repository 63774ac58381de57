"""Hierarchical residual vector quantiser of HR-VQVAE (S-HR-VQVAE paper, eqs. 3-5).

Layer 1 has one codebook of ``M`` codewords; layer ``i`` has ``M**(i-1)`` codebooks of
``M`` codewords (``M**i`` in all), and the codebook used at a latent position is the one
chosen by the codeword path of the layers above. Layer ``i`` quantises the residual
``xi^(i-1) = z - e^1 - ... - e^(i-1)`` left by the layers above (``xi^0 = z``); the
"combined" latent is ``e_C = e^1 + ... + e^n``.

Codes. At each position layer ``i`` has a *local* code ``k_i`` in ``[0, M)`` (its index
within the codebook chosen by the layers above) and a *path* ``p_i = p_(i-1) * M + k_i`` in
``[0, M**i)`` (``p_0 = 0``): the row of the layer's stacked codebook
(``codebooks[i-1]``, shape ``(M**i, D)``). A path names its parents: ``p_(i-1) = p_i // M``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HierarchicalQuantizer"]


class HierarchicalQuantizer(nn.Module):
    """HR-VQVAE quantiser with straight-through gradients and the commitment terms.

    Parameters
    ----------
    dim : int
        Latent channels ``D``.
    layers : int
        Hierarchy layers ``n`` (>= 1).
    size : int
        Codewords ``M`` per codebook (>= 2).
    betas : sequence of float
        ``(beta_0, beta_1, ..., beta_n)``: commitment weight of the combined latent (eq. 4)
        and of each layer (eq. 5).
    """

    def __init__(self, dim: int, layers: int, size: int, betas: tuple[float, ...]) -> None:
        super().__init__()
        if len(betas) != layers + 1:
            raise ValueError(
                f"vq_betas needs {layers + 1} values (beta_0 and one per layer); got {len(betas)}"
            )
        self.dim, self.layers, self.size = int(dim), int(layers), int(size)
        self.betas = tuple(float(b) for b in betas)
        # the residual shrinks layer by layer: so do the initial codewords
        self.codebooks = nn.ParameterList(
            nn.Parameter((torch.rand(size ** (i + 1), dim) * 2 - 1) / (size * 2**i))
            for i in range(layers)
        )

    def lookup(self, paths: torch.Tensor) -> torch.Tensor:
        """Combined latent of code paths.

        Parameters
        ----------
        paths : Tensor, shape (B, n, h, w), int64
            Path of every layer (see the module docstring).

        Returns
        -------
        Tensor, shape (B, D, h, w)
            ``e_C``, summed layer 1 first.
        """
        out = None
        for i in range(self.layers):
            e = self.codebooks[i][paths[:, i]].permute(0, 3, 1, 2)
            out = e if out is None else out + e
        assert out is not None
        return out

    def candidates(self, layer: int, parent: torch.Tensor) -> torch.Tensor:
        """The ``M`` codewords selectable at layer *layer* (0-based) below *parent* paths.

        Parameters
        ----------
        layer : int
        parent : Tensor, int64, any shape S
            Paths of the layer above (zeros for layer 0).

        Returns
        -------
        Tensor, shape (*S, M, D)
        """
        idx = parent.unsqueeze(-1) * self.size + torch.arange(self.size, device=parent.device)
        return self.codebooks[layer][idx]

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantise latents.

        Parameters
        ----------
        z : Tensor, shape (B, D, h, w)
            Encoder output.

        Returns
        -------
        dict
            ``quantized`` (B, D, h, w): ``z + sg(e_C - z)`` (the value of ``e_C``, the
            gradient of the identity); ``paths`` and ``codes`` (B, n, h, w) int64: paths
            and local codes; ``loss``: the quantisation terms of eq. 4 (all but the
            reconstruction), each squared norm a mean over elements.
        """
        b, d, h, w = z.shape
        if d != self.dim:
            raise ValueError(f"latent has {d} channels; the quantiser expects {self.dim}")
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        xi = flat
        parent = torch.zeros(flat.shape[0], dtype=torch.long, device=z.device)
        combined = None
        paths, codes = [], []
        loss = z.new_zeros(())
        for i in range(self.layers):
            cand = self.candidates(i, parent)  # (N, M, D)
            dist = (xi.detach().unsqueeze(1) - cand).pow(2).sum(-1)
            k = dist.argmin(dim=1)
            e = cand[torch.arange(cand.shape[0], device=z.device), k]
            loss = loss + (e - xi.detach()).pow(2).mean()
            loss = loss + self.betas[i + 1] * (xi - e.detach()).pow(2).mean()
            parent = parent * self.size + k
            paths.append(parent)
            codes.append(k)
            combined = e if combined is None else combined + e
            xi = xi - e
        assert combined is not None
        loss = loss + (combined - flat.detach()).pow(2).mean()
        loss = loss + self.betas[0] * (flat - combined.detach()).pow(2).mean()
        e_c = combined.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return {
            "quantized": z + (e_c - z).detach(),
            "combined": e_c,
            "paths": torch.stack(paths, 1).reshape(b, h, w, -1).permute(0, 3, 1, 2),
            "codes": torch.stack(codes, 1).reshape(b, h, w, -1).permute(0, 3, 1, 2),
            "loss": loss,
        }

    def usage(self, paths: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, how often each of its ``M**i`` codewords occurs in *paths* (B, n, h, w)."""
        return [
            torch.bincount(paths[:, i].reshape(-1), minlength=self.size ** (i + 1))
            for i in range(self.layers)
        ]
