"""Small randomly initialised models saved to disk with real tokenizers, so the
transformers adapter's real loading code runs on them (no hub access here): decoder LMs
(:func:`save_decoder`) and a BERT encoder (:func:`save_random_bert`).

* byte-level BPE (GPT-2 and GPT-NeoX / Pythia style): trained on a few sentences, every
  byte in the alphabet, so any text encodes;
* sentencepiece style (Llama / Qwen style): Metaspace pre-tokenizer, BPE with byte
  fallback (``<0x..>`` tokens), as Llama-2's tokenizer.json has it.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT = ["The old man the boats .", "Café owners in Zürich — naïve résumé writers !",
        "Unbelievably , tokenization splits words into pieces .", "Pierre Vinken , 61 years old , will join "
        "the board as a nonexecutive director Nov. 29 ."] * 20


def byte_level_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            model_max_length=64).save_pretrained(path)


def sentencepiece_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=450, special_tokens=specials))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            model_max_length=64).save_pretrained(path)


def save_decoder(kind: str, path: Path) -> Path:
    """A random ``kind`` ("gpt2", "gpt_neox", "llama", "qwen2" or "phi3", whose MLP fuses gate and
    up into one map) LM with 2 layers x 32 units at ``path``."""
    from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM,
                              LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM)

    path.mkdir(parents=True, exist_ok=True)
    (sentencepiece_tokenizer if kind in ("llama", "qwen2", "phi3") else byte_level_tokenizer)(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab, ends = len(tokenizer), {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64, **ends))
    elif kind == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64,
                                                 max_position_embeddings=64, **ends))
    elif kind == "qwen2":
        # room for the special tokens transformers' Qwen2 tokenizer class adds when it loads this one
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab + 16, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, intermediate_size=48,
                                             max_position_embeddings=64, **ends))
    elif kind == "phi3":
        model = Phi3ForCausalLM(Phi3Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, intermediate_size=40,
                                           max_position_embeddings=64, pad_token_id=0, **ends))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                             max_position_embeddings=64, **ends))
    model.save_pretrained(path)
    return path


def save_random_bert(path: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A random BERT (WordPiece over letters, punctuation and digits) at ``path``."""
    import string

    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.ascii_lowercase) + \
        ["##" + c for c in string.ascii_lowercase] + list(string.punctuation) + list(string.digits)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=512)).save_pretrained(path)
    return path
