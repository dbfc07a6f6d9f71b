"""The prompt check's encoder batching (services/common/policy/encode_batch.py): concurrent
callers share encoder calls, each gets its own rows, an error reaches exactly the callers of
the call that raised it, the clause cache still spares cached clauses, and the shipped encoder's
verdicts are the same alone and batched (and at the trimmed length as at the full one).

Concurrency is arranged, never timed: the first encoder call is held inside the encoder until
the other callers are queued behind it."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from services.common.policy.encode_batch import BatchedEncode
from services.common.policy.semantic import StatesCache

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_SECONDS = 60.0  # only ever reached when the code under test deadlocks


def vectors(texts: list[str], dim: int = 16) -> np.ndarray:
    rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=dim)
            for t in texts]
    out = np.array(rows, dtype=np.float32).reshape(len(texts), dim)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class HeldEncoder:
    """Records each call's texts; call `hold_call` waits inside the encoder until `release` is set,
    so the callers that come meanwhile queue behind it. `fail_on` texts make a call raise."""

    def __init__(self, inner=vectors, fail_on: tuple[str, ...] = (), hold_call: int = 1):
        self.inner, self.fail_on, self.hold_call = inner, fail_on, hold_call
        self.calls: list[list[str]] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if len(self.calls) == self.hold_call:
            self.entered.set()
            assert self.release.wait(HANG_GUARD_SECONDS)
        if any(t in self.fail_on for t in texts):
            raise RuntimeError(f"encoder failed on {texts}")
        return self.inner(texts)


class Caller(threading.Thread):
    def __init__(self, encode, texts: list[str]):
        super().__init__(daemon=True)
        self.encode, self.texts = encode, texts
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.encode(self.texts)
        except BaseException as exc:  # the test inspects it
            self.error = exc


def queue_behind_a_held_call(batched: BatchedEncode, encoder: HeldEncoder, first: list[str],
                             others: list[list[str]], through=None) -> list[Caller]:
    """The first caller's call held in the encoder, then each of `others` queued behind it in
    this order (calling `through`, by default `batched`); returns every caller, the first one
    first, all still waiting."""
    through = through or batched
    callers = [Caller(through, first)]
    callers[0].start()
    assert encoder.entered.wait(HANG_GUARD_SECONDS)
    for i, texts in enumerate(others, start=1):
        callers.append(Caller(through, texts))
        callers[-1].start()
        wait_until(lambda i=i: batched.waiting == i)
    return callers


def wait_until(condition) -> None:
    done = threading.Event()
    for _ in range(int(HANG_GUARD_SECONDS * 1000)):
        if condition():
            return
        done.wait(0.001)
    raise AssertionError("the condition never held")


def finish(encoder: HeldEncoder, callers: list[Caller]) -> None:
    encoder.release.set()
    for c in callers:
        c.join(HANG_GUARD_SECONDS)
        assert not c.is_alive()


def test_a_lone_caller_encodes_its_own_texts_at_once_in_one_call():
    calls = []
    batched = BatchedEncode(lambda texts: calls.append(list(texts)) or vectors(texts))
    out = batched(["a sword", "a red apple", "a sword"])
    assert calls == [["a sword", "a red apple"]]
    np.testing.assert_array_equal(out, vectors(["a sword", "a red apple", "a sword"]))
    batched(["a cat"])
    assert calls[-1] == ["a cat"] and batched.calls == 2 and batched.waiting == 0


def test_callers_that_come_during_a_call_share_the_next_one_and_each_gets_its_own_rows():
    encoder = HeldEncoder()
    batched = BatchedEncode(encoder, max_rows=32)
    others = [["a blue car"], ["a tree", "a red apple"], ["a dog", "a blue car"], ["a house"]]
    callers = queue_behind_a_held_call(batched, encoder, ["a red apple"], others)
    finish(encoder, callers)
    # The held call, then one call for everyone queued behind it, each text once.
    assert encoder.calls == [["a red apple"], ["a blue car", "a tree", "a red apple", "a dog", "a house"]]
    for c in callers:
        assert c.error is None
        np.testing.assert_array_equal(c.result, vectors(c.texts))


def test_a_call_takes_the_oldest_callers_up_to_max_rows():
    encoder = HeldEncoder()
    batched = BatchedEncode(encoder, max_rows=3)
    others = [["b"], ["c", "d"], ["e"], ["f", "g", "h", "i"], ["j"]]
    callers = queue_behind_a_held_call(batched, encoder, ["a"], others)
    finish(encoder, callers)
    # A caller wider than max_rows still goes whole, in a call of its own.
    assert encoder.calls == [["a"], ["b", "c", "d"], ["e"], ["f", "g", "h", "i"], ["j"]]
    for c in callers:
        np.testing.assert_array_equal(c.result, vectors(c.texts))


def test_an_error_reaches_exactly_the_callers_of_the_call_that_raised_it():
    encoder = HeldEncoder(fail_on=("poison",))
    batched = BatchedEncode(encoder, max_rows=2)
    others = [["x"], ["poison"], ["y"], ["z"]]
    callers = queue_behind_a_held_call(batched, encoder, ["a"], others)
    finish(encoder, callers)
    assert encoder.calls == [["a"], ["x", "poison"], ["y", "z"]]
    first, x, poison, y, z = callers
    assert x.error is poison.error and isinstance(x.error, RuntimeError)
    for c in (first, y, z):
        assert c.error is None
        np.testing.assert_array_equal(c.result, vectors(c.texts))
    # Nothing is left held: the next lone caller runs its own call.
    np.testing.assert_array_equal(batched(["w"]), vectors(["w"]))
    assert encoder.calls[-1] == ["w"] and batched.waiting == 0


def test_an_error_in_a_lone_call_is_raised_and_the_next_call_runs():
    def encode(texts):
        if "poison" in texts:
            raise ValueError("bad")
        return vectors(texts)

    batched = BatchedEncode(encode)
    with pytest.raises(ValueError, match="bad"):
        batched(["poison"])
    np.testing.assert_array_equal(batched(["ok"]), vectors(["ok"]))


def test_an_encoder_giving_the_wrong_number_of_rows_fails_that_call():
    batched = BatchedEncode(lambda texts: vectors(texts)[:1])
    with pytest.raises(ValueError, match="returned"):
        batched(["a", "b"])


def test_cached_clauses_are_never_encoded_and_a_clause_new_to_two_callers_is_encoded_once():
    encoder = HeldEncoder(hold_call=2)
    batched = BatchedEncode(encoder)
    cache = StatesCache(batched, size=64)
    cache(["a cached clause"])
    callers = queue_behind_a_held_call(batched, encoder, ["a cached clause", "a held clause"],
                                       [["a cached clause", "new clause"], ["new clause", "another"]], cache)
    finish(encoder, callers)
    assert encoder.calls == [["a cached clause"], ["a held clause"], ["new clause", "another"]]
    for c in callers:
        np.testing.assert_array_equal(c.result, vectors(c.texts))


# --- the shipped text encoder


@pytest.fixture(scope="module")
def shipped():
    """(version, TextEncoder, the same encoder's pooled states at its full declared length, as
    before calls were trimmed: ONNX Runtime on the unchanged file)."""
    import onnxruntime as ort

    from repository.reader import ModelRepository
    from repository.text_encoder import TextEncoder

    if not (ROOT / "models" / "atelier-emoji").is_dir():
        pytest.skip("the shipped model is not in this checkout")
    version = ModelRepository(ROOT / "models").open("atelier-emoji")
    encoder = TextEncoder(version)
    verified = version.onnx("text_encoder")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(version.path))
    full_length = ort.InferenceSession(str(verified.path), options, providers=["CPUExecutionProvider"])

    def pooled_full_length(texts: list[str]) -> np.ndarray:
        enc = encoder.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        assert ids.shape[1] == encoder.max_tokens
        states = full_length.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)
        weights = mask[..., None].astype(np.float32)
        mean = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)

    return version, encoder, pooled_full_length


def policy_prompts(count: int, past_the_terms: bool = False) -> list[str]:
    """`count` prompts spread over tests/policy_prompts/ (only those the term lists let through:
    the semantic match decides them)."""
    import json

    from services.common.policy.normalize import normalize
    from services.common.policy.policies import default_policy
    from services.common.policy.terms import TermMatcher

    lines = (ROOT / "tests" / "policy_prompts" / "prompts.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    if past_the_terms:
        terms, refused = TermMatcher(), default_policy().refused()
        texts = [t for t in texts if terms.first(normalize(t).tokens, refused) is None]
    return texts[:: max(1, len(texts) // count)][:count]


def test_the_shipped_encoder_runs_at_its_longest_text_and_gives_the_full_length_states(shipped):
    _, encoder, pooled_full_length = shipped
    assert encoder.trims
    texts = policy_prompts(60) + ["a", "sprite " * 40, "a red apple, pixel art; on a plain background"]
    # Batched and trimmed (each call as long as its longest text) against one text at a time at full length.
    batched = np.concatenate([encoder.pooled(texts[i:i + 7]) for i in range(0, len(texts), 7)])
    alone = np.concatenate([pooled_full_length([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6)


def concurrently(check_of, encode, prompts: list[str], work):
    """`work(check, prompt)` for every prompt, all prompts queued behind one held encoder call, so
    that they share the next calls; returns the results in the prompts' order."""
    held = HeldEncoder(inner=encode, hold_call=2)  # call 1: the matcher's exemplars
    check = check_of(held)
    results: dict[int, object] = {}

    class Worker(Caller):
        def __init__(self, i):
            super().__init__(None, [])
            self.i = i

        def run(self):
            results[self.i] = work(check, prompts[self.i])

    batched = check.semantic.batched
    workers = [Worker(0)]
    workers[0].start()
    assert held.entered.wait(HANG_GUARD_SECONDS)
    for i in range(1, len(prompts)):
        workers.append(Worker(i))
        workers[-1].start()
        wait_until(lambda i=i: batched.waiting == i)
    finish(held, workers)
    assert len(held.calls) < len(prompts), "the callers did not share calls"
    return [results[i] for i in range(len(prompts))]


def test_verdicts_and_scores_are_the_same_alone_and_in_concurrent_batches(shipped):
    from services.common.policy.check import PromptCheck
    from services.common.policy.policies import default_policy

    _, encoder, pooled_full_length = shipped
    policy = default_policy()
    prompts = policy_prompts(80, past_the_terms=True)

    def check_of(encode):
        check = PromptCheck.with_encoder(encode, encoder.file_sha256)
        assert check.semantic is not None, "thresholds.json was calibrated for another text encoder"
        return check

    # Before: one prompt a call, every call at the full length.
    before = check_of(pooled_full_length)
    alone_verdicts = [before.check_many([p], policy)[0] for p in prompts]
    alone_scores = np.concatenate([before.semantic.scores([p]) for p in prompts])
    assert any(v is not None and v.by == "semantic" for v in alone_verdicts), "no semantic verdict to compare"

    verdicts = concurrently(check_of, encoder.pooled, prompts, lambda check, p: check.check_many([p], policy)[0])
    scores = concurrently(check_of, encoder.pooled, prompts, lambda check, p: check.semantic.scores([p]))
    assert verdicts == alone_verdicts
    np.testing.assert_allclose(np.concatenate(scores), alone_scores, rtol=0, atol=1e-6)


def test_an_input_axis_made_free_is_the_edit_onnx_itself_makes(shipped):
    onnx = pytest.importorskip("onnx")
    from repository.onnx_shapes import free_input_axis

    version, _, _ = shipped
    data = version.onnx("text_encoder").data
    edited = onnx.load_model_from_string(free_input_axis(data, {"input_ids", "attention_mask"}, 1, "sequence"))
    expected = onnx.load_model_from_string(data)
    for value in expected.graph.input:
        value.type.tensor_type.shape.dim[1].dim_param = "sequence"
    assert edited == expected
