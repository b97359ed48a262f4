"""Virtual adversarial training, VAT (Miyato et al. 2018; supplement D.1.3).

The student sees x + r_adv, the target is the teacher's prediction on x, the loss mask is the validity.
r_adv = ε·g/‖g‖ per image, where g comes from one power iteration: g = ∇_r D(f(x), f(x + r)) at
r = ξ·d, d Gaussian noise normalised per image, ξ = 1e-6·H·W/1000 (the authors' value), D the selected
consistency loss (mean over pixels, valid pixels only). The direction network is the teacher (the
authors' default) or the student; it runs in eval mode for the direction, as in the authors' code, and
every module's mode is restored afterwards (their code left it in eval mode).

Radius ε: adaptive per image, r × the image-gradient magnitude ½·sqrt(Σ(x[y+1] − x[y−1])² +
Σ(x[x+1] − x[x−1])²) over the channels and pixels of the (normalised) image; or fixed, r·sqrt(C·H·W).

How g is computed. In float32, x + ξ·d does not change x at all for the authors' ξ (per element
≈ 4e-11 on a 64×64 crop, ≈ 2e-7 at 321×321: below or at the float spacing of normalised pixels), so
the authors' finite difference returns zero or rounding noise there. We compute the same quantity to
first order in ξ, without cancellation: with z = f(x) the logits, J = ∂z/∂x and u = J·d (forward-mode
``torch.func.jvp``),  g = Jᵀ·(∇_z D + ξ·∇²_z D·u)  (one backward pass). ∇_z D is 0 when the target is
the network's own clean prediction, except for ``pseudo_ce``; then ∇²_z D·u, the Gauss–Newton product,
is the Hessian of D at r = 0 applied to d, i.e. what the power iteration estimates. For the losses whose
gradient vanishes there, ∇²_z D·u has a closed form per pixel (``curvature_product``), a few element-wise
operations in place of a double backward pass through the loss; ``bce`` and ``pseudo_ce`` take the
autograd path.

A student's version of the crops (``image_s`` in the batch, e.g. colour-augmented; see ``box_mixing.py``):
as in the authors' later release, the direction network's clean prediction f(x) stays the reference and
the perturbation is sought at the student's input x_s: g = ∇_r D(f(x), f(x_s + r)) at r = ξ·d. Where
x_s ≠ x, ∇_z D no longer vanishes at z = f(x_s) and g ≈ Jᵀ·∇_z D, computed as Jᵀ·(∇_z D + ξ·∇²_z D·u) by
the autograd path (the ξ terms, this one and the omitted ξ·(∂J/∂x·d)ᵀ·∇_z D, are negligible beside it).
An image whose student version equals x gets exactly the direction it gets without ``image_s``. The
student sees x_s + r_adv, ε comes from x_s, and the target is still the teacher's prediction on x.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from .losses import ConsistencyLoss, pixel_loss


def per_image_norm(v: torch.Tensor) -> torch.Tensor:
    """(N, ...) → (N, 1, 1, 1) L2 norm of each sample."""
    return v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def normalise_per_image(v: torch.Tensor) -> torch.Tensor:
    """Each sample divided by its L2 norm (a zero sample stays zero)."""
    scale = v.flatten(1).abs().amax(dim=1).clamp_min(torch.finfo(v.dtype).tiny).view(-1, 1, 1, 1)
    v = v / scale  # first bring the largest entry to 1, so tiny gradients do not underflow in the norm
    return v / per_image_norm(v).clamp_min(torch.finfo(v.dtype).tiny)


def image_gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, 1, 1, 1): ½·sqrt(Σ central vertical differences² + Σ horizontal ones²)."""
    dv = (x[:, :, 2:, :] - x[:, :, :-2, :]).flatten(1)
    dh = (x[:, :, :, 2:] - x[:, :, :, :-2]).flatten(1)
    return 0.5 * torch.sqrt(dv.pow(2).sum(dim=1) + dh.pow(2).sum(dim=1)).view(-1, 1, 1, 1)


def vat_radius(x: torch.Tensor, radius: float, adaptive: bool) -> torch.Tensor:
    """(N, 1, 1, 1) perturbation norm ε per image (see the module doc)."""
    if adaptive:
        return radius * image_gradient_magnitude(x)
    return torch.full((x.shape[0], 1, 1, 1), radius * math.sqrt(x[0].numel()), device=x.device, dtype=x.dtype)


def vat_xi(height: int, width: int) -> float:
    """The norm of the power iteration's starting perturbation (the authors' ξ)."""
    return 1e-6 * height * width / 1000


def softmax_jacobian_product(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J·v for J = ∂softmax/∂z = diag(p) − p·pᵀ over the class axis (dim 1); J is symmetric."""
    return p * (v - (p * v).sum(dim=1, keepdim=True))


def curvature_product(loss_kind: str, z0: torch.Tensor, u: torch.Tensor, loss_mask: torch.Tensor):
    """∇²_z D·u at z = z0, up to a positive factor, or None where there is no closed form here.

    D(z) = mean(mask · pixel_loss(kind, z, target)) with the target taken from z0 itself, so every loss
    but ``pseudo_ce`` has zero gradient at z0 and its Hessian there is, per pixel: var 2·J·J, kld J,
    logits_var 2/√C·I, logits_smoothl1 1/√C·I (J the softmax Jacobian at z0). Factors common to every
    pixel are dropped: the direction is normalised per image. ``bce`` (whose Hessian involves the
    clamped 1/(p(1 − p))) and ``pseudo_ce`` (non-zero gradient) return None.
    """
    if loss_kind == "var":
        p = torch.softmax(z0, dim=1)
        return softmax_jacobian_product(p, softmax_jacobian_product(p, u)) * loss_mask
    if loss_kind == "kld":
        return softmax_jacobian_product(torch.softmax(z0, dim=1), u) * loss_mask
    if loss_kind in ("logits_var", "logits_smoothl1"):
        return u * loss_mask
    return None


def curvature_product_autograd(loss_kind: str, z0: torch.Tensor, u: torch.Tensor, loss_mask: torch.Tensor,
                               xi: float, z_ref: torch.Tensor | None = None) -> torch.Tensor:
    """∇_z D + ξ·∇²_z D·u at z0 by a double backward pass (any loss), rescaled per image; D compares with
    the target taken from the reference logits ``z_ref`` (default: z0 itself)."""
    z_ref = z0 if z_ref is None else z_ref
    target = z_ref if loss_kind in ("logits_var", "logits_smoothl1") else torch.softmax(z_ref, dim=1)
    with torch.enable_grad():
        z = z0.detach().requires_grad_(True)
        divergence = (pixel_loss(loss_kind, z, target) * loss_mask[:, 0]).mean()
        (grad_z,) = torch.autograd.grad(divergence, z, create_graph=True)
        (hess_u,) = torch.autograd.grad(grad_z, z, grad_outputs=u)
    return normalise_per_image(grad_z.detach() + xi * hess_u)


def adversarial_direction(net: nn.Module, x: torch.Tensor, loss_mask: torch.Tensor, loss_kind: str,
                          generator: torch.Generator, x_ref: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, H, W) unit-norm (per image) direction that most increases D(f(x), f(x + r)) (module doc);
    with ``x_ref``, D(f(x_ref), f(x + r)) (the student's version x of the clean x_ref, module doc).

    x: (N, C, H, W) normalised images; loss_mask: (N, 1, H, W) validity. ``net`` runs in eval mode and
    gets every module's training flag back afterwards.
    """
    modes = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        d = normalise_per_image(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
        with torch.no_grad(), warnings.catch_warnings():
            # torch's own forward-mode decompositions call the deprecated torch.jit.script when first loaded
            warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
            z0, u = torch.func.jvp(net, (x,), (d,))  # clean logits and J·d, (N, K, H, W)
        # the logit-space gradient at r = ξ·d, to first order; rescaled per image (the direction is
        # scale-free and images are independent in eval mode) so the backward pass cannot underflow
        grad_out = curvature_product(loss_kind, z0, u, loss_mask)
        if grad_out is None:
            grad_out = curvature_product_autograd(loss_kind, z0, u, loss_mask, vat_xi(*x.shape[-2:]))
        else:
            grad_out = normalise_per_image(grad_out)
        if x_ref is not None:  # the images whose student copy differs: pulled towards f(x_ref) (module doc)
            differ = (x_ref != x).flatten(1).any(dim=1)
            if differ.any():
                with torch.no_grad():
                    z_ref = net(x_ref)
                towards_ref = curvature_product_autograd(loss_kind, z0, u, loss_mask, vat_xi(*x.shape[-2:]), z_ref)
                grad_out = torch.where(differ.view(-1, 1, 1, 1), towards_ref, grad_out)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(net(x_in), x_in, grad_outputs=grad_out)
    finally:
        for module, mode in modes:
            module.train(mode)
    return normalise_per_image(g)


def finite_difference_direction(net: nn.Module, x: torch.Tensor, loss_mask: torch.Tensor, loss_kind: str,
                                generator: torch.Generator, x_ref: torch.Tensor | None = None) -> torch.Tensor:
    """The authors' power iteration, literally: g = ∇_r D(f(x), f(x + r)) at r = ξ·d, normalised per image
    (with ``x_ref``: D(f(x_ref), f(x + r)), as their later release computed it for a colour-augmented x).

    In float32 x + ξ·d rounds back to x for small crops (module doc), so g is mostly rounding noise there;
    kept for reproducing the paper-era runs (``--vat-finite-diff``). Modes restored as in
    ``adversarial_direction``.
    """
    modes = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        d = normalise_per_image(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
        with torch.no_grad():
            z0 = net(x if x_ref is None else x_ref)
        target = z0 if loss_kind in ("logits_var", "logits_smoothl1") else torch.softmax(z0, dim=1)
        with torch.enable_grad():
            r = (vat_xi(*x.shape[-2:]) * d).requires_grad_(True)
            divergence = (pixel_loss(loss_kind, net(x.detach() + r), target) * loss_mask[:, 0]).mean()
            (g,) = torch.autograd.grad(divergence, r)
    finally:
        for module, mode in modes:
            module.train(mode)
    return normalise_per_image(g)


class VAT:
    """Student sees x + r_adv; target g(x); loss mask valid."""

    needs_partner = False
    needs_views = False
    default_weight = 0.1  # Pascal / Cityscapes and the ISIC supplement (D.4); ISIC authors' scripts: 0.001
    # the authors' VAT script defaulted to KL divergence and none of their run scripts changed it, so the
    # paper's VAT runs (and its weight 0.1) used kld, as VAT itself does (Miyato et al.)
    defaults = {"cons_loss": "kld"}

    def __init__(self, cons_loss: ConsistencyLoss, rng: np.random.Generator, vat_radius: float = 1.0,
                 adaptive_vat_radius: bool = True, vat_dir_from_student: bool = False,
                 vat_finite_diff: bool = False):
        if vat_radius < 0:
            raise ValueError(f"VAT radius must be >= 0, got {vat_radius}")
        self.cons_loss, self.rng = cons_loss, rng
        self.radius, self.adaptive, self.dir_from_student = vat_radius, adaptive_vat_radius, vat_dir_from_student
        self.direction = finite_difference_direction if vat_finite_diff else adversarial_direction

    def torch_generator(self, device) -> torch.Generator:
        """A torch generator for this call's noise, seeded from the loop's numpy generator."""
        generator = torch.Generator(device=device)
        generator.manual_seed(int(self.rng.integers(0, 2**63 - 1)))
        return generator

    def perturbation(self, net: nn.Module, x: torch.Tensor, valid: torch.Tensor,
                     x_ref: torch.Tensor | None = None) -> torch.Tensor:
        """r_adv (N, C, H, W) at x with ‖r_adv‖ = ε per image; ``x_ref``: the clean reference (module doc)."""
        direction = self.direction(net, x, valid, self.cons_loss.kind, self.torch_generator(x.device), x_ref)
        return vat_radius(x, self.radius, self.adaptive) * direction

    def __call__(self, student, teacher, batch, partner=None):
        x, valid = batch["image"], batch["valid"]
        x_s = batch.get("image_s", x)  # the student's version of the crops (module doc)
        r_adv = self.perturbation(student if self.dir_from_student else teacher, x_s, valid,
                                  None if x_s is x else x)
        with torch.no_grad():
            target = self.cons_loss.target(teacher(x))
        loss, stats = self.cons_loss(student(x_s + r_adv), target, valid)
        stats["vat_radius"] = per_image_norm(r_adv).mean()
        return loss, stats
