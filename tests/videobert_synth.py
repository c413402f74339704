"""A tiny WordPiece vocabulary and a synthetic narrated "archive" whose words predict its visual words.

Every sentence names a colour, an object and a motion ("the red ball rolls"); each of its clips
carries three visual words (factored vocabulary: one per group) for the same colour, object and
motion. Combinations are unique per sentence, so every sentence has exactly one matching window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.decode import CLIP_SECONDS

COLOURS = ("red", "blue", "green", "yellow")
OBJECTS = ("ball", "car", "dog", "cup")
MOTIONS = ("rolls", "jumps", "spins")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = ("the", "a", "now", "let", "me", "show", "you", "how", "to", "is", "and", "then", "it", "##s")
N_VISUAL = len(COLOURS) + len(OBJECTS) + len(MOTIONS)  # 11 visual words in 3 groups


def write_vocab(folder: Path) -> Path:
    """A WordPiece vocab.txt; returns the folder (usable as a tokenizer dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join([*SPECIALS, *WORDS, *COLOURS, *OBJECTS, *MOTIONS]) + "\n")
    return folder


def text_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    write_vocab(folder)
    return BertTokenizerFast.from_pretrained(str(folder))


def clip_tokens(colour: int, obj: int, motion: int) -> list[int]:
    return [colour, len(COLOURS) + obj, len(COLOURS) + len(OBJECTS) + motion]


def archive(n_videos: int = 4, per_video: int = 12, silent_every: int = 4, seed: int = 0):
    """(sentences rows, clips rows, tokens (n_clips, 3)) with 2-clip sentences and silent gaps."""
    rng = np.random.default_rng(seed)
    combos = [(c, o, m) for c in range(len(COLOURS)) for o in range(len(OBJECTS)) for m in range(len(MOTIONS))]
    order = rng.permutation(len(combos))
    sentences, clips, tokens = [], [], []
    k = 0
    for v in range(n_videos):
        t = 0.0
        for s in range(per_video):
            c, o, m = combos[order[k % len(combos)]]
            k += 1
            start = t
            for _ in range(2):
                clips.append({"video_id": f"v{v}", "start": t, "end": t + CLIP_SECONDS})
                tokens.append(clip_tokens(c, o, m))
                t += CLIP_SECONDS
            sentences.append({"video_id": f"v{v}", "sentence_index": s, "start": start, "end": t,
                              "text": f"the {COLOURS[c]} {OBJECTS[o]} {MOTIONS[m]}"})
            if silent_every and s % silent_every == silent_every - 1:  # a silent stretch of 3 clips
                for _ in range(3):
                    clips.append({"video_id": f"v{v}", "start": t, "end": t + CLIP_SECONDS})
                    tokens.append(list(rng.integers(0, N_VISUAL, size=3)))
                    t += CLIP_SECONDS
    return sentences, clips, np.asarray(tokens, dtype=np.int64)


def tiny_tokenizer(folder: Path, max_len: int = 64, max_text_len: int = 16):
    from model.tokenization import VideoBertTokenizer

    return VideoBertTokenizer(text_tokenizer(folder), N_VISUAL, 3, max_len=max_len, max_text_len=max_text_len)


def tiny_model(tok, hidden: int = 32, layers: int = 2, dropout: float = 0.0, seed: int = 0):
    import torch

    from model.videobert import VideoBert, VideoBertConfig

    cfg = VideoBertConfig(text_vocab_size=tok.text_vocab_size, n_visual_words=tok.n_visual_words,
                          tokens_per_clip=tok.tokens_per_clip, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=4, intermediate_size=2 * hidden, max_position_embeddings=64,
                          embed_dim=hidden, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(seed)
    return VideoBert(cfg)
