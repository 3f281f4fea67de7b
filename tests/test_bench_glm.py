"""The functional-fidelity score of the SR benchmark: GLM z-maps of a series with a planted effect."""
import numpy as np
import pandas as pd

from bids_boldsr.bench.glm import contrasts, glm_zmaps, zmap_agreement


def _run(rng, noise):
    """16x16x6 voxels, 120 volumes (TR 2 s), condition 'a' activates x < 8, 'b' nothing."""
    t_r, n = 2.0, 120
    onsets = np.arange(10, n * t_r - 20, 20.0)
    events = pd.DataFrame({"onset": onsets, "duration": 8.0,
                           "trial_type": ["a" if i % 2 == 0 else "b" for i in range(len(onsets))]})
    frame_times = np.arange(n) * t_r
    box = np.zeros(n)
    for onset, kind in zip(events.onset, events.trial_type):
        if kind == "a":
            box[(frame_times >= onset) & (frame_times < onset + 8)] = 1
    hrf = np.exp(-((np.arange(0, 20, t_r) - 5) ** 2) / 8)
    signal = np.convolve(box, hrf)[:n]
    series = 100 + noise * rng.standard_normal((16, 16, 6, n))
    series[:8] += 3 * signal
    return series.astype(np.float32), events, t_r


def test_contrasts_are_each_condition_against_the_others_and_all_against_baseline():
    assert contrasts(["b", "a", "a"]) == {"a-others": "a - (b) / 1", "b-others": "b - (a) / 1",
                                          "all-baseline": "(a + b) / 2"}


def test_glm_finds_the_planted_effect_and_agreement_drops_with_noise():
    rng = np.random.default_rng(0)
    mask = np.ones((16, 16, 6), bool)
    clean, events, t_r = _run(rng, 1.0)
    z = glm_zmaps(clean, np.eye(4), mask, events, t_r)
    assert set(z) == {"a-others", "b-others", "all-baseline"}
    assert z["a-others"][:8].mean() > 5 and abs(z["a-others"][8:].mean()) < 1
    same = zmap_agreement(z["a-others"], z["a-others"], mask)
    assert same["r"] > 0.999 and same["dice"] == 1.0
    noisy, _, _ = _run(rng, 8.0)
    worse = zmap_agreement(z["a-others"], glm_zmaps(noisy, np.eye(4), mask, events, t_r)["a-others"], mask)
    assert 0.3 < worse["r"] < 0.99 and worse["dice"] < 0.99
    assert worse["suprathreshold_ref"] > worse["suprathreshold"] > 0
