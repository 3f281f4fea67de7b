"""Decision threshold of the segmenter, fitted on synthetic images from the *training* label maps.

The cerebellum is labelled where ``1 - p(background)`` exceeds the threshold; the class among
the cerebellar labels is the most probable one. The threshold that maximises the mean
whole-cerebellum Dice on seeded validation crops (T1, EPI and random contrasts, BOLD-like and
structural resolutions) is stored with the weights. Held-out maps are never used here.
"""
import numpy as np
import torch

from .synth import synth_crop

THRESHOLDS = tuple(np.round(np.arange(0.3, 0.951, 0.05), 2))
CONTRASTS = (("epi", True), ("t1", False), ("random", True), ("epi", False), ("t1", True), ("random", False))


def validation_crops(maps, seed, n=24):
    """``n`` (image, target) crops, seeded apart from the training stream (which uses ``seed``)."""
    out = []
    for k in range(n):
        gen = torch.Generator().manual_seed(-(seed * 1_000_003 + k + 1) % (2 ** 63))
        contrast, bold_like = CONTRASTS[k % len(CONTRASTS)]
        out.append(synth_crop(maps[k % len(maps)], gen, contrast=contrast, bold_like=bold_like))
    return out


def dice_by_threshold(segmenter, crops, thresholds=THRESHOLDS, device="cpu") -> dict:
    """Mean whole-cerebellum Dice of ``crops`` at every threshold (2 mm crop grid, mirrored pass)."""
    from .cnn import segment_probabilities

    scores = np.zeros(len(thresholds))
    for image, target in crops:
        prob = segment_probabilities(segmenter, image[0], device, threshold=min(thresholds))
        fg = prob[1:].sum(0).numpy()
        truth = target[1:].sum(0).numpy() > 0.5
        for i, t in enumerate(thresholds):
            pred = fg > t
            denom = pred.sum() + truth.sum()
            scores[i] += 2 * (pred & truth).sum() / denom if denom else 1.0
    return {float(t): round(float(s / len(crops)), 4) for t, s in zip(thresholds, scores)}


def fit_threshold(segmenter, maps, seed, n=24, device="cpu") -> tuple[float, dict]:
    """(best threshold, Dice per threshold) on validation crops from the training maps."""
    segmenter.eval()
    with torch.no_grad():
        curve = dice_by_threshold(segmenter, validation_crops(maps, seed, n), device=device)
    return max(curve, key=curve.get), curve
