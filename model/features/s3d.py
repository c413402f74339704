"""S3D (Xie et al. 2018) clip features, as in VideoBERT: Kinetics-400 weights, classifier removed,
the 1024-d output of the last block average-pooled over time and space.

Weights come from `weights_path` (safetensors, or a torch state dict read with weights_only=True)
or else from torchvision (its cache, or a download on a networked machine). Preprocessing is the
one that belongs to `S3D_Weights.KINETICS400_V1` (resize 256x256, centre crop 224, normalise), so
clips are decoded at 256x256 and the resize is a no-op.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from model.features import ClipFeatureExtractor

log = logging.getLogger(__name__)

S3D_DIM = 1024  # channels of the last SepInception block
INPUT_SIZE = (256, 256)  # (width, height): the weights' resize_size, so decoding does the resize
BATCH_CPU = 4  # clips per forward pass on CPU (30x224x224 clips are ~20 GFLOP each)
BATCH_CUDA = 32  # clips per forward pass on a GPU, fp16 autocast


def load_state_dict(path: str | Path) -> dict:
    """Read an S3D state dict from a .safetensors file or a torch checkpoint (tensors only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"S3D weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints often wrap the weights; accept the two common wrappers.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _torchvision_state_dict() -> dict:
    from torchvision.models.video import S3D_Weights

    weights = S3D_Weights.KINETICS400_V1
    try:  # torch hub checks its cache ($TORCH_HOME/hub/checkpoints) before downloading
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise RuntimeError(
            f"S3D Kinetics-400 weights are not in torchvision's cache and could not be downloaded ({exc}); "
            "pass --s3d-weights PATH (safetensors or a torch state dict) or use --features colormotion"
        ) from exc


class S3DExtractor(ClipFeatureExtractor):
    name = "s3d"
    dim = S3D_DIM
    groups = {"s3d": (0, S3D_DIM)}
    input_size = INPUT_SIZE

    def __init__(self, weights_path: str | Path | None = None, device: str = "cpu"):
        import torch
        from torchvision.models.video import S3D_Weights, s3d

        self.device = torch.device(device)
        self.batch_size = BATCH_CUDA if self.device.type == "cuda" else BATCH_CPU
        self.transform = S3D_Weights.KINETICS400_V1.transforms()
        state = load_state_dict(weights_path) if weights_path else _torchvision_state_dict()
        model = s3d(weights=None)
        model.classifier = torch.nn.Identity()  # keep the pooled 1024-d features, not the 400 logits
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"S3D weights {weights_path or 'from torchvision'} do not fit the S3D model: {exc}") from exc
        self.model = model.eval().to(self.device)
        log.info("S3D loaded from %s on %s", weights_path or "torchvision", self.device)

    def __call__(self, clips: np.ndarray, x_scale: float = 1.0) -> np.ndarray:
        import torch

        if clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected (B, T, H, W, 3) clips, got shape {clips.shape}")
        out = []
        for i in range(0, len(clips), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(clips[i : i + self.batch_size]))  # (B, T, H, W, 3)
            x = x.to(self.device).permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W), as the preset expects
            with torch.inference_mode(), torch.autocast(
                device_type=self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"
            ):
                y = self.model(self.transform(x))  # (B, 3, T, 224, 224) -> (B, 1024)
            out.append(y.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros((0, self.dim), np.float32)
