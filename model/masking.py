"""BERT masking on both modalities: pick 15 % of text wordpieces and 15 % of visual words; of those,
80 % become [MASK], 10 % a random token of the SAME modality, 10 % stay unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.tokenization import Batch

IGNORE_INDEX = -100  # label for positions that carry no loss (torch cross_entropy's default)


@dataclass(frozen=True)
class MaskingOptions:
    text_rate: float = 0.15  # fraction of text wordpieces chosen for MLM
    visual_rate: float = 0.15  # fraction of visual words chosen for MVM
    mask_fraction: float = 0.8  # of the chosen: replaced by [MASK]
    random_fraction: float = 0.1  # of the chosen: replaced by a random token of the same modality


@dataclass
class Masked:
    input_ids: torch.Tensor  # (B, T) the corrupted ids
    mlm_labels: torch.Tensor  # (B, T) text vocabulary id where chosen, else IGNORE_INDEX
    mvm_labels: torch.Tensor  # (B, T) visual word index (0..n_words-1) where chosen, else IGNORE_INDEX


def mask_batch(
    batch: Batch,
    mask_id: int,
    text_vocab_size: int,
    visual_offset: int,
    n_visual_words: int,
    options: MaskingOptions = MaskingOptions(),
    generator: torch.Generator | None = None,
    random_text_ids: torch.Tensor | None = None,
) -> Masked:
    """Corrupt `batch.input_ids` (a copy) and return the labels.

    `random_text_ids` restricts the 10 % random text replacements to real words (default: any
    text id, as BERT does)."""
    ids = batch.input_ids
    shape = ids.shape

    def uniform() -> torch.Tensor:
        return torch.rand(shape, generator=generator)

    chosen_text = batch.text_mask.cpu() & (uniform() < options.text_rate)
    chosen_vis = batch.visual_mask.cpu() & (uniform() < options.visual_rate)
    action = uniform()  # one draw decides mask / random / keep for each chosen position
    to_mask = action < options.mask_fraction
    to_random = (action >= options.mask_fraction) & (action < options.mask_fraction + options.random_fraction)

    if random_text_ids is None:
        rand_text = torch.randint(0, text_vocab_size, shape, generator=generator)
    else:
        pick = torch.randint(0, len(random_text_ids), shape, generator=generator)
        rand_text = random_text_ids[pick]
    rand_vis = torch.randint(0, n_visual_words, shape, generator=generator) + visual_offset

    cpu_ids = ids.cpu()
    out = cpu_ids.clone()
    chosen = chosen_text | chosen_vis
    out[chosen & to_mask] = mask_id
    out[chosen_text & to_random] = rand_text[chosen_text & to_random]
    out[chosen_vis & to_random] = rand_vis[chosen_vis & to_random]

    mlm = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    mlm[chosen_text] = cpu_ids[chosen_text]
    mvm = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    mvm[chosen_vis] = cpu_ids[chosen_vis] - visual_offset
    dev = ids.device
    return Masked(out.to(dev), mlm.to(dev), mvm.to(dev))
