"""ELMo's character ids, shared by the ELMo and Transformer-ELMo adapters.

Exactly AllenNLP's ``ELMoCharacterMapper`` conventions (Peters et al. 2018): a
word is its UTF-8 bytes, cut to 48, framed by begin-of-word (258) and
end-of-word (259) and padded with 260 to 50 characters; the sentence markers
``<S>`` / ``</S>`` are the single characters 256 / 257 framed the same way,
and so is a *word* that reads exactly ``<S>`` or ``</S>`` (AllenNLP's
``convert_word_to_char_ids`` checks the text before encoding it); every id is
then shifted by one so that 0 marks a padded (absent) word.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_WORD_LENGTH = 50
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260


def _special(char: int) -> list[int]:
    ids = [PAD_CHAR] * MAX_WORD_LENGTH
    ids[0], ids[1], ids[2] = BOW_CHAR, char, EOW_CHAR
    return [c + 1 for c in ids]


BOS_IDS = _special(BOS_CHAR)
EOS_IDS = _special(EOS_CHAR)


BOS_WORD, EOS_WORD = "<S>", "</S>"


def word_to_ids(word: str) -> list[int]:
    if word == BOS_WORD:
        return list(BOS_IDS)
    if word == EOS_WORD:
        return list(EOS_IDS)
    encoded = word.encode("utf-8", "ignore")[: MAX_WORD_LENGTH - 2]
    ids = [PAD_CHAR] * MAX_WORD_LENGTH
    ids[0] = BOW_CHAR
    for k, byte in enumerate(encoded, start=1):
        ids[k] = byte
    ids[len(encoded) + 1] = EOW_CHAR
    return [c + 1 for c in ids]


def batch_char_ids(sentences: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(batch, longest + 2, 50) int64 ids with ``<S>`` and ``</S>`` around every sentence,
    and the (batch, longest + 2) mask of real positions (markers included)."""
    longest = max(len(s) for s in sentences)
    ids = np.zeros((len(sentences), longest + 2, MAX_WORD_LENGTH), dtype=np.int64)
    mask = np.zeros((len(sentences), longest + 2), dtype=bool)
    for b, words in enumerate(sentences):
        ids[b, 0] = BOS_IDS
        for i, w in enumerate(words, start=1):
            ids[b, i] = word_to_ids(w)
        ids[b, len(words) + 1] = EOS_IDS
        mask[b, : len(words) + 2] = True
    return ids, mask
