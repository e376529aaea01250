"""Streaming from the worker: chunk by chunk, token for token what transformers' ``generate`` says."""

from __future__ import annotations

from bot.inference.types import FinishReason, SamplingParams
from tests.inference._streams import finished, greedy_params, run, start

CAPITAL = "What is the capital of France?"  # greedy: "The capital of France is Paris." then EOS (8 tokens)
STORY = "Write a long story about a dragon who loves tea and lives in the mountains near a small village."
QUESTIONS = ["Say hi.", "List three colors.", "What is 2+2?", "Tell me a joke."]


async def test_chunks_arrive_one_by_one(backend, prompt_for):
    """A reply comes as several chunks with growing token counts; only the last carries a finish reason."""
    stream = await run(backend, prompt_for(STORY), greedy_params(16))

    assert len(stream.chunks) > 1
    assert all(chunk.finish_reason is None for chunk in stream.chunks[:-1])
    assert stream.chunks[-1].finish_reason is not None
    counts = [chunk.completion_tokens for chunk in stream.chunks]
    assert counts == sorted(counts)
    assert counts[-1] == 16


async def test_greedy_text_matches_transformers_generate(backend, prompt_for, greedy):
    """One request alone gives exactly the text and token count of greedy ``model.generate``."""
    prompt = prompt_for(STORY)
    expected = greedy(prompt, 20)

    stream = await run(backend, prompt, greedy_params(20))

    assert stream.text == expected.text
    assert stream.completion_tokens == len(expected.token_ids)


async def test_end_of_sequence_finishes_with_stop(backend, prompt_for, greedy):
    """A reply that reaches EOS ends with STOP, counting the EOS token, and no EOS text."""
    prompt = prompt_for(CAPITAL)
    expected = greedy(prompt, 24)
    assert expected.finish is FinishReason.STOP  # the premise: this answer is short

    stream = await run(backend, prompt, greedy_params(24))

    assert stream.finish is FinishReason.STOP
    assert stream.text == expected.text == "The capital of France is Paris."
    assert stream.completion_tokens == len(expected.token_ids)


async def test_max_new_tokens_finishes_with_length(backend, prompt_for, greedy):
    """A reply cut by ``max_new_tokens`` ends with LENGTH after exactly that many tokens."""
    prompt = prompt_for(CAPITAL)

    stream = await run(backend, prompt, greedy_params(3))

    assert stream.finish is FinishReason.LENGTH
    assert stream.completion_tokens == 3
    assert stream.text == greedy(prompt, 3).text == "The capital of"


async def test_stop_sequence_cuts_the_text(backend, prompt_for):
    """A stop sequence spanning several tokens ends the reply just before it, with STOP."""
    prompt = prompt_for(CAPITAL, stop=("f Fra",))  # inside " of" + " France"

    stream = await run(backend, prompt, greedy_params(24))

    assert stream.finish is FinishReason.STOP
    assert stream.text == "The capital o"
    assert stream.completion_tokens < 8


async def test_stop_sequence_never_streams_its_start(backend, prompt_for):
    """No chunk shows the beginning of a stop sequence that is later completed."""
    prompt = prompt_for(CAPITAL, stop=("France is",))

    stream = await run(backend, prompt, greedy_params(24))

    assert stream.text == "The capital of "
    assert all("France" not in chunk.text for chunk in stream.chunks)


async def test_prompts_of_different_lengths_batched_together_match_generate(seam_backend, prompt_for, greedy):
    """Rows with different prompt lengths prefilled as one left-padded batch each give their own greedy output."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    assert len({len(p) for p in prompts}) == len(prompts)
    worker, model = await seam_backend()
    pacer_prompt = prompt_for(STORY)
    pacer, pacer_task = start(worker, pacer_prompt, greedy_params(24))
    await pacer.reached(1)

    await model.hold()  # the worker waits inside a decode step while all four reach its inbox
    tasks = [start(worker, p, greedy_params(24))[1] for p in prompts]
    await model.release()
    *streams, pacer = await finished(*tasks, pacer_task)

    assert (len(prompts), max(len(p) for p in prompts)) in model.prefill_shapes  # one padded prefill
    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 24)), stream.text
    assert pacer.matches(greedy(pacer_prompt, 24)), pacer.text  # the row the four were merged into


async def test_request_joining_mid_generation_matches_generate(backend, prompt_for, greedy):
    """A request merged into a running batch, and the rows already there, decode exactly as alone."""
    first, second = prompt_for(STORY), prompt_for("Say hi.")
    running, running_task = start(backend, first, greedy_params(24))
    await running.reached(6)

    joined, joined_task = start(backend, second, greedy_params(24))
    await finished(running_task, joined_task)

    assert joined.first < running.last  # it really joined while the other was decoding
    assert running.matches(greedy(first, 24)), running.text
    assert joined.matches(greedy(second, 24)), joined.text


async def test_sampling_settings_are_per_row(backend, prompt_for, greedy):
    """A greedy row stays greedy while it shares the batch with sampled rows."""
    prompt = prompt_for(STORY)
    sampled = [
        start(backend, prompt, SamplingParams(max_new_tokens=24, temperature=1.5, repetition_penalty=1.3, seed=s))[1]
        for s in range(3)
    ]
    greedy_stream, greedy_task = start(backend, prompt, greedy_params(24))

    await finished(greedy_task, *sampled)

    assert greedy_stream.matches(greedy(prompt, 24))
