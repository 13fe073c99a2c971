"""CDNet's training losses.

Main output: BCE + soft-IoU (Dice-like). Chosen over the normalized focal loss because on tiny
CPU batches it is stable from the first step and has no focusing hyper-parameter to tune; the
IoU term keeps small objects from being drowned by background pixels, which is what NFL buys.
Diversified heads (multiple-choice learning): each sample's best head gets the full loss, and
every head must agree with the clicks themselves. Quality: regression of the true IoU.
Boundary: BCE again, averaged over the band of pixels within 3 px of the object's boundary
only. Why: the clicks an object still needs near 90% IoU go to that band; averaged over the
whole crop its pixels are a few percent of the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cdnet.model.cdnet import CDNetOutput


def bce_soft_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample loss (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((1, 2, 3))
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    union = (p + target - p * target).sum((1, 2, 3))
    return bce + 1 - (inter + 1) / (union + 1)


def boundary_bce(logits: torch.Tensor, target: torch.Tensor, width: int = 3) -> torch.Tensor:
    """BCE averaged over the pixels within `width` px of the target's boundary (scalar)."""
    k = 2 * width + 1
    grown = F.max_pool2d(target, k, 1, width)
    shrunk = -F.max_pool2d(-target, k, 1, width)
    band = grown - shrunk  # 1 where a window holds both labels
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * band).sum() / (band.sum() + 1.0)


def hard_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of binary maps per sample (B,); an empty union counts as a perfect match."""
    inter = (pred * target).sum((1, 2, 3))
    union = ((pred + target) > 0).float().sum((1, 2, 3))
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


BOUNDARY_WEIGHT = 0.5


def cdnet_loss(out: CDNetOutput, gt: torch.Tensor, clicks: torch.Tensor, prior: torch.Tensor,
               teacher_probs: torch.Tensor | None = None,
               boundary_weight: float = BOUNDARY_WEIGHT) -> tuple[torch.Tensor, dict]:
    """gt, prior (B,1,H,W) in {0,1}; clicks (B,2,H,W). `boundary_weight`: the boundary
    band's share of the total against the main loss's 1."""
    main = bce_soft_iou(out.logits, gt).mean()
    boundary = boundary_bce(out.logits, gt)
    gt16 = F.adaptive_avg_pool2d(gt, out.coarse_logits.shape[-2:])
    coarse = F.binary_cross_entropy_with_logits(out.coarse_logits, gt16)

    gt4 = F.adaptive_avg_pool2d(gt, out.head_logits.shape[-2:])
    per_head = F.binary_cross_entropy_with_logits(
        out.head_logits, gt4.expand_as(out.head_logits), reduction="none")  # B,K,h,w
    best = per_head.mean((2, 3)).min(dim=1).values.mean()
    clicks4 = F.adaptive_max_pool2d(clicks, out.head_logits.shape[-2:])
    region = (clicks4.sum(1, keepdim=True) > 0).float()
    click_target = clicks4[:, :1]
    at_clicks = F.binary_cross_entropy_with_logits(
        out.head_logits, click_target.expand_as(out.head_logits), reduction="none")
    heads = best + (at_clicks * region).sum() / (region.sum() * out.head_logits.shape[1] + 1)

    with torch.no_grad():
        iou_out = hard_iou((out.logits > 0).float(), gt)
        iou_prior = hard_iou((prior > 0.5).float(), gt)
        iou_prior = torch.where(prior.flatten(1).amax(1) > 0, iou_prior,
                                torch.zeros_like(iou_prior))
    quality = F.mse_loss(out.quality, torch.stack([iou_out, iou_prior], 1))

    total = main + boundary_weight * boundary + 0.4 * coarse + 0.4 * heads + 0.5 * quality
    parts = {"main": main.item(), "boundary": boundary.item(), "heads": heads.item(),
             "quality": quality.item(),
             "iou": iou_out.mean().item()}
    if teacher_probs is not None:
        distill = F.binary_cross_entropy_with_logits(out.logits, teacher_probs)
        total = total + 0.5 * distill
        parts["distill"] = distill.item()
    return total, parts
