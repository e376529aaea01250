"""Choosing the next token: greedy, seeded sampling, nucleus (top-p) and the CTRL repetition penalty."""

from __future__ import annotations

import math

import torch

from bot.inference.sampling import apply_repetition_penalty, sample_batch
from bot.inference.types import SamplingParams
from tests.inference._streams import finished, run, start

STORY = "Write a long story about a dragon who loves tea and lives in the mountains near a small village."


def seeded(seed: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=16, temperature=1.0, seed=seed)


async def test_same_seed_gives_the_same_text(backend, prompt_for):
    """Two requests with one seed sample the same text, side by side and again later; another seed differs."""
    prompt = prompt_for(STORY)
    twins = await finished(*(start(backend, prompt, seeded(7))[1] for _ in range(2)))
    other = await run(backend, prompt, seeded(8))
    again = await run(backend, prompt, seeded(7))

    assert twins[0].text == twins[1].text == again.text
    assert other.text != again.text


def test_temperature_zero_is_argmax():
    """A row with temperature 0 takes the most likely token, whatever its top_p or seed."""
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0], [3.0, 0.0, 2.9, 1.0]])
    params = [SamplingParams(temperature=0.0, top_p=0.1, seed=1), SamplingParams(temperature=0.0)]
    generators = [torch.Generator().manual_seed(1), None]
    empty = torch.tensor([], dtype=torch.long)

    assert sample_batch(logits, params, [empty, empty], generators) == [1, 0]


def test_greedy_row_is_unaffected_by_sampled_rows():
    """In a mixed batch the greedy row still takes its argmax while the hot rows sample."""
    logits = torch.tensor([[0.0, 0.0, 5.0, 0.0]] + [[0.0, 0.0, 0.0, 0.0]] * 64)
    params = [SamplingParams(temperature=0.0)] + [SamplingParams(temperature=1.0)] * 64
    torch.manual_seed(0)

    chosen = sample_batch(logits, params, [torch.tensor([], dtype=torch.long)] * 65, [None] * 65)

    assert chosen[0] == 2
    assert len(set(chosen[1:])) > 1


def test_top_p_samples_only_from_the_nucleus():
    """With top_p 0.6 over probabilities 0.5/0.3/0.2 only the first two tokens are ever drawn."""
    rows = 400
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.2)]]).repeat(rows, 1)
    torch.manual_seed(0)

    chosen = sample_batch(
        logits,
        [SamplingParams(temperature=1.0, top_p=0.6)] * rows,
        [torch.tensor([], dtype=torch.long)] * rows,
        [None] * rows,
    )

    assert set(chosen) == {0, 1}


def test_top_p_keeps_at_least_one_token():
    """A top_p smaller than the most likely token's probability still leaves that token to draw."""
    rows = 100
    logits = torch.tensor([[math.log(0.4), math.log(0.35), math.log(0.25)]]).repeat(rows, 1)
    torch.manual_seed(0)

    chosen = sample_batch(
        logits,
        [SamplingParams(temperature=1.0, top_p=0.01)] * rows,
        [torch.tensor([], dtype=torch.long)] * rows,
        [None] * rows,
    )

    assert set(chosen) == {0}


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    """CTRL: a seen token's positive logit is divided by the penalty, a negative one multiplied, once per token."""
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])

    apply_repetition_penalty(logits, 2.0, torch.tensor([0, 1, 1]))

    assert logits.tolist() == [1.0, -4.0, 1.0, 0.5]


def test_repetition_penalty_changes_the_greedy_choice():
    """A penalized seen token loses the argmax to an unseen one."""
    logits = torch.tensor([[3.0, 2.0, -1.0]])

    chosen = sample_batch(
        logits, [SamplingParams(temperature=0.0, repetition_penalty=2.0)], [torch.tensor([0])], [None]
    )

    assert chosen == [1]


def test_sampling_leaves_the_callers_logits_alone():
    """The repetition penalty is applied to a copy: the logits passed in are unchanged."""
    logits = torch.tensor([[3.0, 2.0, -1.0]])

    sample_batch(logits, [SamplingParams(temperature=0.0, repetition_penalty=2.0)], [torch.tensor([0, 2])], [None])

    assert logits.tolist() == [[3.0, 2.0, -1.0]]
