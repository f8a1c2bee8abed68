"""ffcore.rng: categorical draws (multinomial on the CPU, exponential race on a GPU) and reseeding."""

import pytest
import torch

from ffcore.rng import draw_categorical, exponential_race, reseed_value, restore_generator

# A head's belief over ten labels, the true one (label 2) zeroed as _negative_labels does.
BELIEF = torch.tensor([0.30, 0.02, 0.0, 0.15, 0.08, 0.20, 0.01, 0.12, 0.07, 0.05])
DRAWS = 200_000
# Chi-square with 8 degrees of freedom (nine labels can be drawn): exceeded with probability 0.001.
CHI2_8_DOF_0_001 = 26.12


def chi_square(drawn: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(drawn, minlength=len(probs)).double()
    possible = probs > 0
    expected = probs.double()[possible] / probs.sum() * len(drawn)
    assert counts[~possible].sum() == 0, "a label of zero weight was drawn"
    return float(((counts[possible] - expected) ** 2 / expected).sum())


def test_the_exponential_race_draws_the_same_distribution_as_multinomial():
    weights = BELIEF.repeat(DRAWS, 1)
    race = exponential_race(weights, torch.Generator().manual_seed(1))
    multinomial = torch.multinomial(weights, 1, generator=torch.Generator().manual_seed(2)).squeeze(1)
    assert chi_square(race, BELIEF) < CHI2_8_DOF_0_001
    assert chi_square(multinomial, BELIEF) < CHI2_8_DOF_0_001
    # The two samples against each other: each label's share agrees to within sampling noise
    # (four standard errors of a difference of two shares at DRAWS draws each).
    share_race = torch.bincount(race, minlength=10).double() / DRAWS
    share_multinomial = torch.bincount(multinomial, minlength=10).double() / DRAWS
    noise = (2 * BELIEF.double() * (1 - BELIEF.double()) / DRAWS).sqrt()
    assert ((share_race - share_multinomial).abs() <= 4 * noise + 1e-12).all()


def test_the_chi_square_check_catches_a_wrong_race():
    # argmax(w * E) instead of argmax(w / E) favours the likely labels less: the check must see it.
    weights = BELIEF.repeat(DRAWS, 1)
    arrivals = torch.empty_like(weights).exponential_(generator=torch.Generator().manual_seed(1))
    assert chi_square((weights * arrivals).argmax(dim=1), BELIEF) > 100 * CHI2_8_DOF_0_001


def test_on_the_cpu_the_draw_is_torch_multinomial_exactly():
    # CPU runs keep their random streams: the same draws as before the race existed.
    weights = torch.rand(1000, 10, generator=torch.Generator().manual_seed(0))
    drawn = draw_categorical(weights, torch.Generator().manual_seed(5))
    expected = torch.multinomial(weights, 1, generator=torch.Generator().manual_seed(5)).squeeze(1)
    assert torch.equal(drawn, expected)


def test_a_nan_belief_still_gives_draws_on_the_cpu():
    # A diverged head: training must go on to its finiteness check, which names the problem.
    weights = torch.full((5, 10), float("nan"))
    drawn = draw_categorical(weights, torch.Generator().manual_seed(0))
    assert drawn.shape == (5,) and ((drawn >= 0) & (drawn < 10)).all()
    with pytest.raises(RuntimeError):  # other bad input is still refused, as torch.multinomial does
        draw_categorical(torch.full((5, 10), -1.0), torch.Generator())


def test_reseeding_depends_on_the_seed_and_the_step_only():
    assert reseed_value(0, 27) == reseed_value(0, 27)
    assert len({reseed_value(0, 27), reseed_value(0, 28), reseed_value(1, 27)}) == 3
    assert 0 <= reseed_value(2**63 - 1, 10**9) < 2**63


@pytest.mark.parametrize(
    ("state", "recorded", "reason"),
    [
        (torch.zeros(16, dtype=torch.uint8), "cuda", "saved on cuda"),  # a GPU run's generator
        (torch.zeros(16, dtype=torch.uint8), None, "saved on cuda"),  # the same, from before the field
        (torch.zeros(16, dtype=torch.uint8), "cpu", "does not fit a cpu generator"),  # a broken state
    ],
)
def test_a_state_the_generator_cannot_take_reseeds_it_with_a_warning(state, recorded, reason, caplog):
    generator = torch.Generator()
    assert not restore_generator(generator, state, recorded, seed=3, step=40)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(reseed_value(3, 40)).get_state())
    assert "resume at step 40 is not bit-exact" in caplog.text and reason in caplog.text


def test_a_state_of_the_same_kind_of_device_continues_the_stream():
    saved = torch.Generator().manual_seed(9)
    torch.rand(3, generator=saved)  # somewhere in the stream, not at a seed
    generator = torch.Generator()
    assert restore_generator(generator, saved.get_state(), "cpu", seed=0, step=1)
    assert torch.equal(torch.rand(5, generator=generator), torch.rand(5, generator=saved))
