import pyro.distributions as dist
import pytest
import torch

from pyro_vae.app.registry import GUIDES
from pyro_vae.distributions import ReparameterizedNormal, score_through_value
from pyro_vae.guides import MAX_SCALE, MIN_SCALE, IAFGuide, NormalGuide
from pyro_vae.networks import mlp_encoder

SHAPE = (1, 28, 28)


def iaf_guide(latent_dim=3, depth=2, seed=0):
    torch.manual_seed(seed)
    guide = IAFGuide(*mlp_encoder(SHAPE, [32]), latent_dim=latent_dim, depth=depth)
    with torch.no_grad():  # move the flow off its initialization: non-trivial steps
        for p in guide.steps.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return guide


def test_registry_has_normal_and_iaf():
    assert set(GUIDES) == {"normal", "iaf"}


@pytest.mark.parametrize("latent_dim, depth", [(1, 1), (3, 2), (4, 3)])
def test_iaf_log_prob_of_its_samples_is_the_change_of_variables_formula(
    latent_dim, depth, binary_batch
):
    guide = iaf_guide(latent_dim, depth)
    x = binary_batch[:6]
    q = guide(x)
    z0 = q.base_dist.rsample((2,))  # [2, 6, D] draws of the amortized Normal
    z = z0
    for t in q.transforms:
        z = t(z)
    log_q = q.log_prob(z)  # the guide's own samples (the flow's cache holds their inverse)

    # independently: log q(z) = log N(z0) - log|det dz/dz0|, the Jacobian by autograd
    h = guide.context(guide.body(x))
    expected = torch.empty(2, 6)
    for n in range(2):
        for i in range(6):
            conditioned = [s.condition(h[i]) for s in guide.steps]

            def flow(v, conditioned=conditioned):
                for t in conditioned:
                    v = t(v)
                return v

            jacobian = torch.autograd.functional.jacobian(flow, z0[n, i])
            log_det = torch.linalg.slogdet(jacobian).logabsdet
            expected[n, i] = q.base_dist.log_prob(z0[n, i])[i] - log_det
    torch.testing.assert_close(log_q, expected, rtol=1e-4, atol=1e-4)
    # a fresh tensor misses the cache: log_prob then inverts the flow, with the same result
    torch.testing.assert_close(q.log_prob(z.detach().clone()), log_q.detach(), rtol=1e-4, atol=1e-4)


def test_iaf_is_reparameterized_and_differs_from_its_base(binary_batch):
    guide = iaf_guide()
    q = guide(binary_batch[:8])
    assert q.has_rsample and q.batch_shape == (8,) and q.event_shape == (3,)
    torch.manual_seed(1)
    z0 = q.base_dist.rsample()
    torch.manual_seed(1)
    z = q.rsample()
    assert (z - z0).abs().max() > 1e-2, "the flow steps move the base draw"
    z.sum().backward()
    for name, p in guide.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_iaf_depth_and_alternating_order():
    guide = iaf_guide(latent_dim=4, depth=3)
    orders = [s.nn.permutation.tolist() for s in guide.steps]
    assert orders == [[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3]]


@pytest.mark.parametrize("kind", [NormalGuide, IAFGuide])
def test_scales_stay_positive_and_bounded_on_extreme_inputs(kind):
    torch.manual_seed(0)
    guide = kind(*mlp_encoder(SHAPE, [32]), latent_dim=3)
    x = torch.cat([torch.full((1, *SHAPE), 1e6), torch.full((1, *SHAPE), -1e6)])
    q = guide(x)
    normal = q.base_dist.base_dist if kind is IAFGuide else q.base_dist
    scale = normal.scale
    assert ((scale >= MIN_SCALE) & (scale <= MAX_SCALE + MIN_SCALE)).all()
    z = q.rsample()
    assert torch.isfinite(q.log_prob(z)).all()


def _normal_parameters(seed=0):
    torch.manual_seed(seed)
    loc = torch.randn(6, 3, requires_grad=True)
    scale = (torch.rand(6, 3) + 0.2).requires_grad_()
    return loc, scale


def test_normal_scores_its_own_draw_like_the_general_formula():
    """The eps shortcut has the value and the total derivative of Normal.log_prob."""
    loc, scale = _normal_parameters()
    torch.manual_seed(1)
    q = ReparameterizedNormal(loc, scale)
    z = q.rsample((4,))
    shortcut = q.log_prob(z)
    torch.manual_seed(1)
    reference_q = dist.Normal(loc, scale)
    reference_z = reference_q.rsample((4,))
    reference = reference_q.log_prob(reference_z)
    assert torch.equal(z, reference_z)  # the same random numbers
    assert torch.allclose(shortcut, reference, atol=1e-6)
    d_loc, d_scale = torch.autograd.grad(shortcut.sum(), (loc, scale), allow_unused=True)
    expected_loc, expected_scale = torch.autograd.grad(reference.sum(), (loc, scale))
    assert d_loc is None  # d/dloc of log q(loc + scale eps) is exactly 0: not in the graph
    assert torch.allclose(expected_loc, torch.zeros_like(loc), atol=1e-5)
    assert torch.allclose(d_scale, expected_scale, atol=1e-5)


def test_normal_shortcut_is_only_for_its_own_draw_outside_score_through_value():
    """Any other value, and every value inside score_through_value, routes through z."""
    loc, scale = _normal_parameters()
    q = ReparameterizedNormal(loc, scale)
    z = q.rsample()
    seen = []
    z.register_hook(lambda grad: seen.append(grad) or grad)
    q.log_prob(z).sum().backward(retain_graph=True)
    assert seen == []  # the shortcut: no derivative through z
    with score_through_value():
        q.log_prob(z).sum().backward()
    assert len(seen) == 1 and torch.allclose(seen[0], -(z - loc).detach() / scale.detach() ** 2)
    other = z.detach() + 0.5
    assert torch.equal(q.log_prob(other), dist.Normal(loc, scale).log_prob(other))


def test_normal_guide_samples_are_scored_by_the_shortcut(binary_batch):
    guide = NormalGuide(*mlp_encoder(SHAPE, [16]), latent_dim=2)
    q = guide(binary_batch[:5])
    z = q.rsample((3,))
    general = dist.Normal(q.base_dist.loc, q.base_dist.scale).to_event(1).log_prob(z)
    assert torch.allclose(q.log_prob(z), general, atol=1e-5)
