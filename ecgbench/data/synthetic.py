"""Plausible single-lead ECG with known rhythm labels, generated in milliseconds per record.

Each beat is a sum of Gaussian waves (P, Q, R, S, T), the shape of McSharry
et al.'s ECGSYN ("A dynamical model for generating synthetic
electrocardiogram signals", IEEE TBME 2003;50:289-294), placed at beat times
drawn per class:

- ``N`` sinus rhythm, 55-95 bpm, small respiratory variation, P waves;
- ``A`` atrial fibrillation: irregularly irregular RR (log-normal, CV 0.15-0.3),
  no P waves, fibrillatory f-waves at 4.5-8 Hz;
- ``O`` other: sinus bradycardia, sinus tachycardia, or premature ventricular
  beats (wide QRS, discordant T, compensatory pause);
- ``~`` noise: a weak N or A rhythm under muscle noise, motion drift and spikes.

Every record gets baseline wander, white noise and mains hum. The result is a
benchmark harness's test data, not a physiological model: it never stands in
for real recordings in reported results (``Dataset.synthetic``).
"""

from __future__ import annotations

import numpy as np

from ecgbench import CLASSES
from ecgbench.kinds.dataset import Record

GENERATOR_VERSION = 1  # bump when the generated signals change, to invalidate caches and results

# Class mix of the CinC 2017 training set (final labels; Clifford et al. 2017):
# N 59 %, A 9 %, O 28 %, ~ 4 %.
CINC_PROPORTIONS = (0.59, 0.09, 0.28, 0.04)
# The default is more balanced, so a suite of a few hundred records has enough
# AF and noise examples for a small model to learn all four classes.
DEFAULT_PROPORTIONS = (0.35, 0.25, 0.25, 0.15)

SHARE_OF_30_S = 0.6  # most CinC recordings are 30 s long; the rest spread over 9-60 s
BEAT_SPAN_S = (-0.3, 0.6)  # the window around each R peak in which a beat's waves are drawn


def class_counts(n_records: int, proportions: tuple[float, ...]) -> np.ndarray:
    """Records per class, summing to ``n_records`` (largest remainder)."""
    p = np.asarray(proportions, dtype=np.float64)
    share = p / p.sum() * n_records
    counts = np.floor(share).astype(np.int64)
    remainder = n_records - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
    return counts


def generate_records(
    n_records: int,
    seed: int = 0,
    fs_hz: float = 300.0,
    min_duration_s: float = 9.0,
    max_duration_s: float = 60.0,
    proportions: tuple[float, ...] = DEFAULT_PROPORTIONS,
) -> list[Record]:
    """``n_records`` labelled records, identical for identical arguments."""
    root = np.random.SeedSequence([GENERATOR_VERSION, seed])
    plan_rng, *record_seeds = (np.random.default_rng(s) for s in root.spawn(n_records + 1))
    labels = np.repeat(np.arange(len(CLASSES)), class_counts(n_records, proportions))
    plan_rng.shuffle(labels)
    durations = np.where(
        plan_rng.random(n_records) < SHARE_OF_30_S, 30.0, plan_rng.uniform(min_duration_s, max_duration_s, n_records)
    )
    durations = np.clip(durations, min_duration_s, max_duration_s)
    records = []
    for i, (rng, label, duration) in enumerate(zip(record_seeds, labels, durations)):
        n = int(round(duration * fs_hz))
        signal = synthesize(rng, CLASSES[label], n, fs_hz)
        records.append(Record(f"S{i:05d}", signal, float(fs_hz), CLASSES[label], f"synthetic(seed={seed})"))
    return records


def synthesize(rng: np.random.Generator, label: str, n: int, fs_hz: float) -> np.ndarray:
    """One record of class ``label``: ``n`` float32 samples in millivolts."""
    duration = n / fs_hz
    if label == "~":
        rhythm = "A" if rng.random() < 0.3 else "N"
    elif label == "O":
        rhythm = rng.choice(["brady", "tachy", "ectopic"])
    else:
        rhythm = label
    times, rr, ectopic = beat_times(rng, rhythm, duration)
    morph = morphology(rng)
    ecg = render_beats(times, rr, ectopic, has_p=rhythm != "A", morph=morph, n=n, fs_hz=fs_hz)
    t = np.arange(n) / fs_hz
    if rhythm == "A":
        ecg += fibrillatory_waves(rng, t, fs_hz)
    if label == "~":
        ecg = ecg * rng.uniform(0.1, 0.4) + artefacts(rng, n, fs_hz)
    ecg += recording_noise(rng, t)
    return ecg.astype(np.float32)


def beat_times(rng: np.random.Generator, rhythm: str, duration_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-peak times (s), the RR interval ending at each, and which beats are ventricular ectopics."""
    heart_rate = {"N": (55, 95), "A": (75, 150), "brady": (35, 52), "tachy": (105, 160), "ectopic": (60, 95)}[rhythm]
    rr0 = 60.0 / rng.uniform(*heart_rate)
    k = int(duration_s / 0.25) + 2  # more beats than can fit; the shortest RR below is 0.28 s
    beat = np.arange(k)
    if rhythm == "A":
        # Irregularly irregular: independent log-normal intervals around the mean.
        rr = rr0 * rng.lognormal(0.0, rng.uniform(0.15, 0.3), k)
    else:
        # Sinus rhythm: respiratory sinus arrhythmia (0.15-0.4 Hz) plus a little jitter.
        resp_hz = rng.uniform(0.15, 0.4)
        rr = rr0 * (1 + rng.uniform(0.01, 0.05) * np.sin(2 * np.pi * resp_hz * beat * rr0 + rng.uniform(0, 2 * np.pi)))
        rr *= 1 + rng.normal(0, 0.01, k)
    ectopic = np.zeros(k, dtype=bool)
    if rhythm == "ectopic":
        # Premature ventricular beats: coupling interval ~60 % of RR, then a
        # compensatory pause so the two intervals span two sinus cycles.
        ectopic = rng.random(k) < rng.uniform(0.1, 0.3)
        ectopic[1:] &= ~ectopic[:-1]  # no couplets
        ectopic[0] = False
        coupling = rng.uniform(0.55, 0.7)
        rr = np.where(ectopic, rr * coupling, rr)
        after = np.r_[False, ectopic[:-1]]
        rr = np.where(after, rr * (2 - coupling), rr)
    rr = np.maximum(rr, 0.28)
    times = rng.uniform(0, rr0) + np.cumsum(rr) - rr[0]
    keep = times < duration_s
    return times[keep], rr[keep], ectopic[keep]


def morphology(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-record wave parameters (P, Q, R, S, T): offset from R (s, T scaled by sqrt(RR)), width (s), amplitude (mV)."""
    r_amp = rng.uniform(0.6, 1.6)
    t_sign = -1.0 if rng.random() < 0.1 else 1.0
    return {
        "offset": np.array([-rng.uniform(0.14, 0.2), -0.03, 0.0, 0.03, rng.uniform(0.25, 0.32)]),
        "width": np.array([0.025, 0.012, rng.uniform(0.009, 0.015), 0.014, 0.055]),
        "amp": np.array(
            [rng.uniform(0.08, 0.2), -rng.uniform(0.05, 0.15) * r_amp, r_amp, -rng.uniform(0.1, 0.4) * r_amp, t_sign * rng.uniform(0.15, 0.4)]
        ),
        "resp_hz": np.array(rng.uniform(0.15, 0.4)),
    }


def render_beats(
    times: np.ndarray, rr: np.ndarray, ectopic: np.ndarray, has_p: bool, morph: dict, n: int, fs_hz: float
) -> np.ndarray:
    """Sum of every beat's Gaussian waves on ``n`` samples (all beats at once, then np.bincount)."""
    k = len(times)
    offset = np.tile(morph["offset"], (k, 1))
    width = np.tile(morph["width"], (k, 1))
    amp = np.tile(morph["amp"], (k, 1))
    offset[:, 4] *= np.sqrt(rr / 1.0)  # QT shortens with heart rate (Bazett)
    width[:, 4] *= np.sqrt(rr / 1.0)
    if not has_p:
        amp[:, 0] = 0.0
    # Ventricular ectopics: no P, no Q, a wide tall R, deep S and a T opposite to the QRS.
    r = morph["amp"][2]
    amp[ectopic] = [0.0, 0.0, 1.3 * r, -0.5 * r, -0.6 * abs(morph["amp"][4]) - 0.1]
    width[ectopic] = [0.025, 0.012, 0.035, 0.04, 0.08]
    offset[ectopic] = [-0.18, -0.03, 0.0, 0.06, 0.36]
    amp *= (1 + 0.08 * np.sin(2 * np.pi * morph["resp_hz"] * times))[:, None]  # respiration moves the electrical axis

    first, last = (int(round(b * fs_hz)) for b in BEAT_SPAN_S)
    lags = np.arange(first, last + 1)
    u = lags / fs_hz
    waves = amp[:, :, None] * np.exp(-0.5 * ((u[None, None, :] - offset[:, :, None]) / width[:, :, None]) ** 2)
    shapes = waves.sum(axis=1)  # [beats, lags]
    positions = np.round(times * fs_hz).astype(np.int64)[:, None] + lags[None, :]
    inside = (positions >= 0) & (positions < n)
    return np.bincount(positions[inside], weights=shapes[inside], minlength=n)


def fibrillatory_waves(rng: np.random.Generator, t: np.ndarray, fs_hz: float) -> np.ndarray:
    """Atrial f-waves: 4.5-8 Hz, 0.03-0.12 mV, with drifting frequency and amplitude."""
    base_hz = rng.uniform(4.5, 8.0)
    drift = np.cumsum(rng.normal(0, 1, len(t))) / np.sqrt(len(t)) * 0.5  # slow frequency wander, ~+-0.5 Hz
    phase = 2 * np.pi * np.cumsum(base_hz + drift) / fs_hz
    envelope = rng.uniform(0.03, 0.12) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi)))
    return envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))


def recording_noise(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Baseline wander (0.1-0.5 Hz), white noise and mains hum at 50 or 60 Hz."""
    wander = sum(rng.uniform(0.02, 0.12) * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi)) for _ in range(2))
    hum = rng.uniform(0, 0.02) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t)
    return wander + hum + rng.normal(0, rng.uniform(0.005, 0.03), len(t))


def artefacts(rng: np.random.Generator, n: int, fs_hz: float) -> np.ndarray:
    """What makes a recording unreadable: muscle noise bursts, motion drift and electrode-pop spikes."""
    bursts = np.repeat(rng.random(n // int(fs_hz) + 1) < 0.6, int(fs_hz))[:n]  # muscle noise on ~60 % of seconds
    muscle = rng.normal(0, rng.uniform(0.1, 0.4), n) * bursts
    walk = np.cumsum(rng.normal(0, 1, n))
    walk -= np.linspace(walk[0], walk[-1], n)
    motion = walk / (np.ptp(walk) + 1e-9) * rng.uniform(0.5, 2.0)
    spikes = np.zeros(n)
    spikes[rng.integers(0, n, rng.integers(2, 12))] = rng.choice([-1, 1], 1) * rng.uniform(1, 3)
    spikes = np.convolve(spikes, np.exp(-np.arange(int(0.05 * fs_hz)) / (0.01 * fs_hz)))[:n]
    return muscle + motion + spikes
