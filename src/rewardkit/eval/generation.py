"""Candidates for best-of-N: ``n`` sampled responses per prompt from any Hugging Face causal LM
(:func:`generate_candidates`). The selection and curve maths over their rewards is :mod:`rewardkit.eval.bon`."""

from __future__ import annotations

from collections.abc import Sequence

from rewardkit.records import Prompt


def generate_candidates(
    model_path: str,
    prompts: Sequence[Prompt],
    n: int,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    device=None,
) -> list[list[str]]:
    """Sample ``n`` responses per prompt from any HF causal LM (chat template when it has one)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.dtypes import resolve_device
    from rewardkit.templating import to_messages

    dev = resolve_device(device)
    tok = load_tokenizer(model_path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path).to(dev).eval()
    texts = [
        tok.apply_chat_template(to_messages(p), tokenize=False, add_generation_prompt=True)
        if tok.chat_template
        else (p if isinstance(p, str) else "\n".join(m["content"] for m in p))
        for p in prompts
    ]
    torch.manual_seed(seed)
    out: list[list[str]] = []
    for lo in range(0, len(texts), batch_size):
        enc = tok(
            texts[lo : lo + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not tok.chat_template,
        )
        with torch.inference_mode():
            gen = model.generate(
                **enc.to(dev),
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
            )
        decoded = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.extend(decoded[j : j + n] for j in range(0, len(decoded), n))
    return out
