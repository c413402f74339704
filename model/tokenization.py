"""VideoBERT inputs: WordPiece text + visual words + `[>]`, with segments and clip-time positions.

One vocabulary, laid out as
    [0, V_text)                          the initial checkpoint's WordPiece ids (unchanged)
    V_text                               `[>]`, the text/video separator
    [V_text + 1, V_text + 1 + n_words)   visual word w -> V_text + 1 + w

Sequence forms (segment id under each token, position id below it):
    joint       [CLS] t1 .. tL [>]  c1a c1b  c2a c2b .. [SEP]
    segment       0   0  ..  0  0    1   1    1   1      1
    position      0   1  ..  L L+1  L+2 L+2  L+3 L+3    L+2+n_clips
    text-only   [CLS] t1 .. tL [SEP]             (segment 0, positions 0..L+1)
    video-only  [CLS] [>] c1a c1b .. [SEP]       (the joint form with no text)
With a factored vocabulary a clip contributes `tokens_per_clip` tokens that share one position,
so positions count clip time, not tokens; a group id (1 + the token's slot in its clip, 0 for
text and specials) tells the model which factor a token, or a [MASK] standing in for it, is.

Truncation rule (max_len counts every token, specials included):
    text keeps at most max(max_text_len, room left after the video) wordpieces, its tail cut;
    the video keeps as many WHOLE clips as fit in the rest, chosen evenly across the window
    (so a long window is thinned, not cut short). Text-only and video-only forms use the
    whole length for their one modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

VISUAL_SEP = "[>]"
DEFAULT_MAX_LEN = 96  # tokens, specials included
DEFAULT_MAX_TEXT_LEN = 40  # wordpieces a paired sentence always keeps (if it has them)


class TokenizationError(ValueError):
    """Bad input to the tokenizer (visual ids out of range, wrong shape, nothing to encode)."""


@dataclass(frozen=True)
class Encoded:
    """One sequence before padding."""

    input_ids: list[int]  # joint-vocabulary ids
    token_type_ids: list[int]  # 0 text side, 1 video side
    position_ids: list[int]  # clip-time positions (shared by a clip's tokens)
    text_mask: list[bool]  # True where a text wordpiece sits (maskable for MLM)
    visual_mask: list[bool]  # True where a visual word sits (maskable for MVM)
    group_ids: list[int]  # 1 + the token's slot within its clip for visual words, 0 elsewhere

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """Padded tensors for a list of `Encoded`; shapes (B, T)."""

    input_ids: torch.Tensor  # (B, T) long
    token_type_ids: torch.Tensor  # (B, T) long
    position_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long, 1 = real token
    text_mask: torch.Tensor  # (B, T) bool
    visual_mask: torch.Tensor  # (B, T) bool
    group_ids: torch.Tensor  # (B, T) long, 1 + slot within the clip for visual words, 0 elsewhere

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Batch:
        return Batch(**{k: v.to(device, non_blocking=non_blocking) for k, v in self.__dict__.items()})

    def pin_memory(self) -> Batch:
        """Page-locked copies, so the copy to a GPU can overlap compute (torch's DataLoader calls this)."""
        return Batch(**{k: v.pin_memory() for k, v in self.__dict__.items()})

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "token_type_ids": self.token_type_ids,
            "position_ids": self.position_ids,
            "attention_mask": self.attention_mask,
            "group_ids": self.group_ids,
        }

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


class WordPieces:
    """A saved BERT WordPiece tokenizer read straight from its tokenizer.json with the `tokenizers` library:
    what a checkpoint needs at search time, without importing transformers (1.8 s of a cold CLI search on 2
    cores). It answers the part of transformers' BertTokenizerFast API that this package uses, with the same
    ids and text (tests/test_tokenization.py compares them); training, which may start from a hub name,
    still gets BertTokenizerFast (VideoBertTokenizer.from_pretrained)."""

    SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}

    def __init__(self, folder: str | Path):
        import json

        from tokenizers import Tokenizer

        folder = Path(folder)
        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.backend.no_truncation()  # as BertTokenizerFast called without truncation: VideoBERT cuts itself
        self.backend.no_padding()
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        ids = []
        for attr, default in self.SPECIALS.items():
            token = config.get(attr) if isinstance(config.get(attr), str) else default
            token_id = self.backend.token_to_id(token)
            if token_id is None:
                raise TokenizationError(f"{folder}: the tokenizer has no {token} token")
            setattr(self, attr, token)
            setattr(self, f"{attr}_id", token_id)
            ids.append(token_id)
        self.all_special_ids = ids

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        return {"input_ids": [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)]}

    def convert_ids_to_tokens(self, ids: int | list[int]):
        return self.backend.id_to_token(ids) if isinstance(ids, int) else [self.backend.id_to_token(i) for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = True) -> str:
        text = self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces:  # transformers' clean_up_tokenization, applied after the decoder's
            for spaced, joined in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                                   (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(spaced, joined)
        return text

    def save_pretrained(self, folder: str | Path) -> None:
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        config = {attr: getattr(self, attr) for attr in self.SPECIALS} | {"tokenizer_class": "BertTokenizer"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


class VideoBertTokenizer:
    """Builds VideoBERT sequences from text and visual-token arrays of shape (n_clips, tokens_per_clip)."""

    def __init__(
        self,
        text_tokenizer,
        n_visual_words: int,
        tokens_per_clip: int = 1,
        max_len: int = DEFAULT_MAX_LEN,
        max_text_len: int = DEFAULT_MAX_TEXT_LEN,
    ):
        if n_visual_words < 1 or tokens_per_clip < 1:
            raise TokenizationError("n_visual_words and tokens_per_clip must be >= 1")
        if max_len < 3 + tokens_per_clip or not 0 <= max_text_len <= max_len - 3:
            raise TokenizationError(f"max_len {max_len} / max_text_len {max_text_len} leave no room")
        self.text = text_tokenizer  # WordPieces, or transformers' BertTokenizerFast (training)
        self.n_visual_words = n_visual_words
        self.tokens_per_clip = tokens_per_clip
        self.max_len = max_len
        self.max_text_len = max_text_len
        self.text_vocab_size = len(text_tokenizer)
        self.visual_sep_id = self.text_vocab_size
        self.visual_offset = self.text_vocab_size + 1
        self.cls_id = text_tokenizer.cls_token_id
        self.sep_id = text_tokenizer.sep_token_id
        self.pad_id = text_tokenizer.pad_token_id
        self.mask_id = text_tokenizer.mask_token_id
        self.special_ids = frozenset(text_tokenizer.all_special_ids)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None, n_visual_words: int, tokens_per_clip: int = 1,
                        **kwargs) -> VideoBertTokenizer:
        """Load the WordPiece tokenizer of a BERT folder/name (None = the offline MiniLM)."""
        from transformers import BertTokenizerFast

        from model.textmodels import local_only, resolve_bert

        source, is_local = resolve_bert(name_or_path)
        text = BertTokenizerFast.from_pretrained(source, local_files_only=local_only(is_local))
        return cls(text, n_visual_words, tokens_per_clip, **kwargs)

    def save_text_tokenizer(self, folder: Path) -> None:
        self.text.save_pretrained(str(folder))

    @property
    def vocab_size(self) -> int:
        return self.visual_offset + self.n_visual_words

    def settings(self) -> dict[str, int]:
        """What a checkpoint records to rebuild this tokenizer around the same text tokenizer."""
        return {"n_visual_words": self.n_visual_words, "tokens_per_clip": self.tokens_per_clip,
                "max_len": self.max_len, "max_text_len": self.max_text_len}

    # -- pieces --------------------------------------------------------------------------------------
    def text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids without specials; "[MASK]" in a text becomes the mask id."""
        if not texts:
            return []
        return self.text(list(texts), add_special_tokens=False)["input_ids"]

    def check_video(self, video: np.ndarray) -> np.ndarray:
        arr = np.asarray(video)
        if arr.ndim == 1 and self.tokens_per_clip == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != self.tokens_per_clip:
            raise TokenizationError(
                f"visual tokens must have shape (n_clips, {self.tokens_per_clip}), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise TokenizationError(f"visual tokens must be integers, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_visual_words):
            raise TokenizationError(
                f"visual token ids must lie in [0, {self.n_visual_words}), got [{arr.min()}, {arr.max()}]")
        return arr.astype(np.int64, copy=False)

    def visual_word(self, joint_id: int) -> int:
        return joint_id - self.visual_offset

    # -- sequences -----------------------------------------------------------------------------------
    def encode_ids(self, text_ids: Sequence[int] | None, video: np.ndarray | None) -> Encoded:
        """The sequence for pre-tokenized text (None = video-only) and visual tokens (None = text-only)."""
        if text_ids is None and video is None:
            raise TokenizationError("nothing to encode: give text, video or both")
        if video is None:  # text-only: [CLS] text [SEP]
            kept = list(text_ids)[: self.max_len - 2]  # type: ignore[arg-type]
            ids = [self.cls_id, *kept, self.sep_id]
            n = len(ids)
            return Encoded(ids, [0] * n, list(range(n)), [False, *([True] * len(kept)), False], [False] * n,
                           [0] * n)

        clips = self.check_video(video)
        text_ids = list(text_ids or [])
        room = self.max_len - 3  # [CLS] [>] [SEP]
        video_len = clips.shape[0] * self.tokens_per_clip
        n_text = min(len(text_ids), max(self.max_text_len, room - video_len))
        n_clips = min(clips.shape[0], (room - n_text) // self.tokens_per_clip)
        if n_clips < clips.shape[0]:  # thin evenly so the whole window stays represented
            pick = (np.arange(n_clips) * clips.shape[0]) // max(n_clips, 1)
            clips = clips[pick]
        kept = text_ids[:n_text]

        ids = [self.cls_id, *kept, self.visual_sep_id]
        types = [0] * len(ids)
        positions = list(range(len(ids)))
        first_clip_pos = len(ids)
        visual = (clips + self.visual_offset).reshape(-1).tolist()  # clip-major: c1a c1b c2a c2b ...
        ids += visual
        types += [1] * len(visual)
        positions += np.repeat(np.arange(n_clips) + first_clip_pos, self.tokens_per_clip).tolist()
        ids.append(self.sep_id)
        types.append(1)
        positions.append(first_clip_pos + n_clips)
        n = len(ids)
        text_mask = [False] + [True] * len(kept) + [False] * (n - 1 - len(kept))
        visual_mask = [False] * (len(kept) + 2) + [True] * len(visual) + [False]
        groups = [0] * (len(kept) + 2) + (np.tile(np.arange(self.tokens_per_clip), n_clips) + 1).tolist() + [0]
        return Encoded(ids, types, positions, text_mask, visual_mask, groups)

    def encode(self, text: str | None, video: np.ndarray | None) -> Encoded:
        ids = None if text is None else self.text_ids([text])[0]
        return self.encode_ids(ids, video)

    def encode_batch(self, texts: Sequence[str | None], videos: Sequence[np.ndarray | None]) -> list[Encoded]:
        if len(texts) != len(videos):
            raise TokenizationError(f"{len(texts)} texts but {len(videos)} videos")
        present = [t for t in texts if t is not None]
        it = iter(self.text_ids(present))
        return [self.encode_ids(None if t is None else next(it), v) for t, v in zip(texts, videos, strict=True)]

    def collate(self, items: Sequence[Encoded]) -> Batch:
        """Right-pad to the longest sequence; padding gets the pad id, segment 0, position 0."""
        import torch

        if not items:
            raise TokenizationError("cannot collate an empty batch")
        width = max(len(e) for e in items)
        b = len(items)
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        types = torch.zeros((b, width), dtype=torch.long)
        pos = torch.zeros((b, width), dtype=torch.long)
        att = torch.zeros((b, width), dtype=torch.long)
        tmask = torch.zeros((b, width), dtype=torch.bool)
        vmask = torch.zeros((b, width), dtype=torch.bool)
        groups = torch.zeros((b, width), dtype=torch.long)
        for i, e in enumerate(items):
            n = len(e)
            ids[i, :n] = torch.tensor(e.input_ids)
            types[i, :n] = torch.tensor(e.token_type_ids)
            pos[i, :n] = torch.tensor(e.position_ids)
            att[i, :n] = 1
            tmask[i, :n] = torch.tensor(e.text_mask)
            vmask[i, :n] = torch.tensor(e.visual_mask)
            groups[i, :n] = torch.tensor(e.group_ids)
        return Batch(ids, types, pos, att, tmask, vmask, groups)

    # -- reading ids back ------------------------------------------------------------------------------
    def id_to_token(self, joint_id: int) -> str:
        if joint_id < self.text_vocab_size:
            return self.text.convert_ids_to_tokens(joint_id)
        if joint_id == self.visual_sep_id:
            return VISUAL_SEP
        return f"[V{joint_id - self.visual_offset}]"

    def word_candidates(self) -> np.ndarray:
        """Text ids that are whole words: not specials, not `##` continuations, not `[unused..]` slots."""
        vocab = self.text.convert_ids_to_tokens(list(range(self.text_vocab_size)))
        keep = [i for i, tok in enumerate(vocab)
                if i not in self.special_ids and not tok.startswith("##")
                and not (tok.startswith("[") and tok.endswith("]"))]
        return np.asarray(keep, dtype=np.int64)
