"""Mixed precision on CUDA: bf16 where the GPU computes it natively (Ampere and later), else fp16,
which needs a gradient scaler in training (model.pretrain). CPU runs in fp32."""

from __future__ import annotations

import torch


def amp_dtype(device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for `device`, None for full precision."""
    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def autocast(device: str | torch.device, dtype: torch.dtype | None):
    """torch.autocast for `device` with `dtype`, disabled when dtype is None."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)
