"""Tiny local models for tests, examples and the ``ci`` preset: random-init configs and a tokenizer
trained on the fly with ``tokenizers``. Nothing is downloaded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer(
    words: Sequence[str],
    *,
    chat_template: bool = True,
    pad_token: bool = True,
    encoder: bool = False,
    bpe: bool = False,
    bos: bool = False,
):
    """A word-level tokenizer trained on ``words``.

    ``chat_template``: ChatML-style template with ``<|im_end|>`` as EOS. ``pad_token=False`` leaves the
    pad token unset (rewardkit then pads with EOS: the pad == eos situation of many chat models).
    ``encoder``: BERT-like ``[CLS] a [SEP] b [SEP]`` pair template, no chat template.
    ``bpe``: a GPT-2-style byte-level BPE instead (spaces are part of tokens: ``'is '`` + ``'good'``
    tokenise differently from ``'is good'``, as with real chat models).
    ``bos``: the tokenizer adds a ``<s>`` BOS token and the chat template starts with it (Llama-3, Gemma,
    Mistral): templated text tokenised with ``add_special_tokens=True`` has BOS twice.
    """
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "[CLS]", "[SEP]"] if encoder else ["<unk>", "<|im_start|>", "<|im_end|>"]
    if pad_token:
        specials.append("<pad>")
    if bos:
        specials.append("<s>")
    corpus = list(words) + ["user", "assistant", "system", "User", "Assistant", ":", ".", ",", "?", "!"]
    if bpe:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        rng = random.Random(0)
        lines = [" ".join(rng.sample(corpus, min(12, len(corpus)))) for _ in range(200)]
        trainer = trainers.BpeTrainer(
            vocab_size=2 * len(corpus) + 300,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(lines, trainer)
    else:
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.train_from_iterator([" ".join(corpus)], trainers.WordLevelTrainer(special_tokens=specials))
    if encoder:
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        kwargs = {"cls_token": "[CLS]", "sep_token": "[SEP]"}
    elif bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        kwargs = {"eos_token": "<|im_end|>", "bos_token": "<s>"}
    else:
        kwargs = {"eos_token": "<|im_end|>", "bos_token": None}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>" if pad_token else None, **kwargs
    )
    if chat_template and not encoder:
        fast.chat_template = ("{{ bos_token }}" if bos else "") + CHATML_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | os.PathLike,
    words: Sequence[str] | None = None,
    *,
    arch: str = "llama",
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    chat_template: bool = True,
    pad_token: bool = True,
    vocab_extra: int = 0,
    bpe: bool = False,
    bos: bool = False,
) -> Path:
    """Save a randomly initialised causal LM (``arch="llama"`` or ``"gpt2"``) or encoder (``"bert"``)
    plus tokenizer.

    ``vocab_extra`` pads the embedding table beyond the tokenizer (to test large-vocabulary memory).
    ``bos``: a BOS-adding tokenizer whose chat template starts with BOS (see :func:`build_tiny_tokenizer`).
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, GPT2Config, LlamaConfig

    if words is None:
        from rewardkit.synthetic import vocabulary

        words = vocabulary()
    encoder = arch == "bert"
    tok = build_tiny_tokenizer(
        words, chat_template=chat_template, pad_token=pad_token, encoder=encoder, bpe=bpe, bos=bos
    )
    vocab = len(tok) + vocab_extra
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=512,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.bos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=True,
        )
        model = AutoModelForCausalLM.from_config(config)
    elif arch == "gpt2":  # Conv1D layers: weights stored [in, out] (LoRA's fan_in_fan_out)
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=512,
            eos_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model = AutoModelForCausalLM.from_config(config)
    elif encoder:
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=512,
            pad_token_id=tok.pad_token_id or 0,
        )
        model = AutoModel.from_config(config)
    else:
        raise ValueError(f"unknown tiny arch {arch!r}; use 'llama', 'gpt2' or 'bert'")
    out = Path(out_dir)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
