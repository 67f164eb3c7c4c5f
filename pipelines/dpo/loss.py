"""DPOP (Pal et al., 2024), the loss NotaGen's CLaMP-DPO uses; TRL has no such ``loss_type``.

    loss = −log σ(β · ((log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l))
                        − λ · max(0, log π_ref(y_w) − log π(y_w))))

The penalty keeps the chosen sequence's likelihood from falling below the reference's, which plain DPO
allows (both likelihoods can sink while their margin grows). NotaGen: β = 0.1, λ = 10.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpop_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    lam: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses and the implicit rewards β·(log π − log π_ref) of chosen and rejected.

    Inputs are summed sequence log-probs, shape (batch,).
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    penalty = torch.clamp(ref_chosen - policy_chosen, min=0)
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio - lam * penalty))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
