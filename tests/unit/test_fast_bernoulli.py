import pyro.distributions as dist
import pytest
import torch

from pyro_vae.fast_bernoulli import BernoulliLogits, bernoulli_log_prob


@pytest.mark.parametrize("spread", [1.0, 10.0, 80.0])
def test_values_and_gradients_match_torch(spread):
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 50, 784, generator=generator) * spread).requires_grad_()
    value = torch.bernoulli(torch.full((50, 784), 0.4), generator=generator)
    ours = BernoulliLogits(logits=logits).log_prob(value)
    reference = dist.Bernoulli(logits=logits).log_prob(value)
    assert ours.shape == reference.shape == (3, 50, 784)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-6)
    weights = torch.randn(ours.shape, generator=generator)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (g_ref,) = torch.autograd.grad((reference * weights).sum(), logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-6, rtol=1e-5)


def test_gradcheck_in_double_precision_for_both_inputs():
    logits = (torch.randn(4, 6, dtype=torch.float64) * 4).requires_grad_()
    value = torch.rand(4, 6, dtype=torch.float64).requires_grad_()  # a relaxed value
    assert torch.autograd.gradcheck(bernoulli_log_prob, (logits, value))


@pytest.mark.parametrize("logits_shape, value_shape", [((4, 6), (6,)), ((6,), (4, 6))])
def test_gradcheck_when_one_input_broadcasts_against_the_other(logits_shape, value_shape):
    logits = (torch.randn(logits_shape, dtype=torch.float64) * 4).requires_grad_()
    value = torch.rand(value_shape, dtype=torch.float64).requires_grad_()
    assert bernoulli_log_prob(logits, value).shape == (4, 6)
    assert torch.autograd.gradcheck(bernoulli_log_prob, (logits, value))


def test_saturated_logits_stay_finite_and_exact():
    logits = torch.tensor([-200.0, -30.0, 30.0, 200.0])
    value = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert torch.equal(
        BernoulliLogits(logits=logits).log_prob(value), torch.tensor([0.0, -30.0, -30.0, 0.0])
    )


def test_validation_still_rejects_grey_pixels():
    with pytest.raises(ValueError, match="support"):
        BernoulliLogits(logits=torch.zeros(3), validate_args=True).log_prob(
            torch.tensor([0.0, 0.5, 1.0])
        )


def test_expand_and_to_event_keep_the_fast_class():
    d = BernoulliLogits(logits=torch.zeros(2, 3)).expand([5, 2, 3])
    assert isinstance(d, BernoulliLogits) and d.batch_shape == (5, 2, 3)
    assert d.to_event(2).log_prob(torch.ones(2, 3)).shape == (5,)
