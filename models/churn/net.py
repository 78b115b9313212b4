"""The LSTM churn network: packed variable-length weekly sequences + static RFM features, two heads."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class ChurnNet(nn.Module):
    """LSTM over each customer's real bins only (packed; padding never enters the recurrence).

    Heads: churn logit, and log spend in the horizon given a purchase (trained on buyers only).
    """

    def __init__(self, n_seq: int, n_static: int, hidden: int = 48, static_hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.lstm = nn.LSTM(n_seq, hidden, batch_first=True)
        self.static = nn.Sequential(nn.Linear(n_static, static_hidden), nn.ReLU())
        self.trunk = nn.Sequential(nn.Linear(hidden + static_hidden, 64), nn.ReLU(), nn.Dropout(dropout))
        self.churn = nn.Linear(64, 1)
        self.spend = nn.Linear(64, 1)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        z = self.trunk(torch.cat([h[-1], self.static(static)], dim=1))
        return self.churn(z).squeeze(1), self.spend(z).squeeze(1)


class ChurnEnsemble(nn.Module):
    """Several ChurnNets trained from different seeds; outputs averaged (logits and log spend)."""

    def __init__(self, members: list[ChurnNet] | None = None, *, n_seq: int = 0, n_static: int = 0, hidden: int = 48,
                 members_n: int = 0):
        super().__init__()
        self.members = nn.ModuleList(members or [ChurnNet(n_seq, n_static, hidden) for _ in range(members_n)])

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m(seq, lengths, static) for m in self.members]
        return torch.stack([o[0] for o in outs]).mean(0), torch.stack([o[1] for o in outs]).mean(0)
