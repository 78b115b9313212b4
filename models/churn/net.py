"""The LSTM churn network: variable-length binned sequences (masked) + static RFM features, two heads."""
from __future__ import annotations

import torch
from torch import nn


class ChurnNet(nn.Module):
    """LSTM over each customer's real bins only: sequences are left-aligned (real bins first, zero padding
    after them), and the state is read at each customer's last real bin, so padding never reaches the
    output; the same result as packing, and on CPU about twice as fast (no per-batch sort and re-pack).

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
        steps = int(lengths.max()) if len(lengths) else 0
        out, _ = self.lstm(seq[:, :steps])
        last = out[torch.arange(len(lengths)), lengths.long() - 1]
        z = self.trunk(torch.cat([last, self.static(static)], dim=1))
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
