"""Physically based exposure errors with exact labels.

A well-exposed photo is the *ideal*. The simulator re-exposes it the way a camera would have, had the
exposure been wrong, and labels every pixel with ``r = grey(ideal) − grey(observed)`` (IEA40K convention,
:mod:`exposure_cli.color`): ``r < 0`` over-exposed, ``r > 0`` under-exposed.

The chain, per sample:

1. **Linear light.** The ideal's sRGB values are linearised (``srgb_to_linear``). For HDR radiance maps
   (:mod:`.hdr`) the real scene radiance is used instead, so highlights beyond the ideal's white exist.
2. **EV field.** ``E(x) = global + Σ local`` in stops: a global shift in about −3…+3 EV, plus linear
   gradients (a sky graduated wrong), vignettes, Gaussian spot lights and shadows, and region masks that
   follow image content (a small colour k-means, and soft luminance thresholds such as "the bright sky").
   The sensor receives ``linear · 2**E(x)``.
3. **Sensor.** Poisson–Gaussian noise (shot noise grows with signal, read noise floor), clipping at full
   well (1.0), 12-bit raw quantisation.
4. **Camera rendering.** sRGB encoding followed by a randomised tone curve ``t`` (contrast blend with a
   smoothstep S-curve and a mild gamma), then 8-bit quantisation and optional JPEG re-compression
   (``cv2.imencode``).

**Labels agree with what a photographer sees.** The label compares the observed photo with what *the same
camera* would have produced at the right exposure: ``ideal' = t(ideal)`` and
``observed_clean = t(srgb(clip(linear · 2**E)))``, ``r = grey(ideal') − grey(observed_clean)``. So

* the tone curve is part of the camera's style, not an exposure error: with ``E ≡ 0`` the label is exactly
  zero whatever ``t`` is (the "unmodified original" samples, about 12 %, half of them with ``t`` = identity
  and no noise, i.e. the photo exactly as it came);
* noise, quantisation and JPEG artefacts are applied to the model's input only; the label uses the
  noise-free rendering, because noise is not an exposure error and a photographer would not call a grainy
  but correctly exposed pixel over- or under-exposed;
* clipping *is* in the label: a highlight pushed past full well reads ``grey(ideal') − 1`` — exactly how
  much brighter than ideal the blown pixel is — and shadows crushed at −3 EV read close to their ideal
  grey level.

Every function takes a ``numpy.random.Generator``; with the same seed the output is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Any

import numpy as np

from ..color import grey, linear_to_srgb, residual_from_grey, srgb_to_linear

#: Range the EV field may reach after summing its parts (real mistakes go far into the dark).
EV_FIELD_RANGE = (-9.0, 5.0)
#: Largest |EV| of the legacy (validation set v1/v2) field.
EV_LIMIT = 5.0


@dataclass(frozen=True)
class SimulatorConfig:
    """Probabilities and ranges of the simulated exposure errors (defaults used for training)."""

    p_original: float = 0.12
    p_original_untouched: float = 0.5
    #: Full range of the global shift. ``core_ev`` is where most draws fall (uniform, ``p_global_uniform``);
    #: ``p_global_deep`` draws are uniform below the core (−8…−3 EV: dark frames of a bracket, a night
    #: shot at the wrong shutter speed), ``p_global_bright`` above it; the rest are N(0, sigma).
    global_ev: tuple[float, float] = (-8.0, 4.0)
    core_ev: tuple[float, float] = (-3.0, 3.0)
    p_global_uniform: float = 0.55
    p_global_deep: float = 0.18
    p_global_bright: float = 0.07
    global_ev_sigma: float = 0.7
    ev_field_range: tuple[float, float] = EV_FIELD_RANGE
    #: Share of re-exposed draws that may get local parts (below) on top of their global shift; the others
    #: are a global shift alone. 1.0 (the default) draws exactly as before, without an extra random number.
    p_local: float = 1.0
    p_gradient: float = 0.3
    gradient_ev: tuple[float, float] = (0.4, 2.0)
    p_vignette: float = 0.25
    vignette_ev: tuple[float, float] = (0.3, 1.5)
    p_spots: float = 0.3
    spot_ev: tuple[float, float] = (0.5, 2.5)
    max_spots: int = 3
    p_regions: float = 0.35
    region_ev: tuple[float, float] = (0.5, 2.5)
    p_luma_mask: float = 0.3
    luma_mask_ev: tuple[float, float] = (0.5, 2.5)
    p_tone_curve: float = 0.75
    contrast: tuple[float, float] = (-0.3, 0.6)
    gamma: tuple[float, float] = (0.88, 1.12)
    p_noise: float = 0.75
    shot_noise: tuple[float, float] = (1e-5, 2e-3)
    read_noise: tuple[float, float] = (1e-7, 2e-5)
    p_jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (55, 95)
    #: Camera realism (all 0 in :data:`LEGACY_CONFIG`, which draws bit-identically to the first simulator):
    #: ISO-like gain when the camera pushed a dark exposure (noise variance ``g·shot·x + g²·read``);
    p_iso_push: float = 0.5
    iso_push_stops: tuple[float, float] = (0.0, 5.0)
    #: black level left in the file (linear offset; a lifted or crushed black is the camera's style);
    p_black_level: float = 0.35
    black_level: tuple[float, float] = (-0.002, 0.012)
    #: highlight roll-off (a shoulder from the knee up to full well, per channel);
    p_rolloff: float = 0.45
    rolloff_knee: tuple[float, float] = (0.55, 0.9)
    #: phone-style shadow lift in the tone curve.
    p_toe: float = 0.3
    toe: tuple[float, float] = (0.1, 0.8)


@dataclass
class Sample:
    """One simulated sample. Images are RGB float32 H×W×3 in [0, 1]; maps are H×W float32."""

    observed: np.ndarray
    residual: np.ndarray
    ideal: np.ndarray
    ev_field: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- tone curve


@dataclass(frozen=True)
class ToneCurve:
    """A monotone display-domain curve ``t(y) = ((1 − c)·y + c·smoothstep(y)) ** gamma``; t(0)=0, t(1)=1.

    ``c`` in (−2, 1] keeps the curve monotone; ``c > 0`` adds contrast (an S-curve), ``c < 0`` flattens.
    """

    contrast: float = 0.0
    gamma: float = 1.0
    #: Shadow lift ``t += toe·t·(1 − t)**3`` (monotone for toe ≤ 1), as phones render shadows.
    toe: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.contrast == 0.0 and self.gamma == 1.0 and self.toe == 0.0

    def __call__(self, y: np.ndarray) -> np.ndarray:
        if self.is_identity:
            return np.asarray(y, dtype=np.float32)
        y = np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)
        s = y * y * (3.0 - 2.0 * y)
        out = (1.0 - self.contrast) * y + self.contrast * s
        if self.gamma != 1.0:
            out = np.power(np.clip(out, 0.0, 1.0), self.gamma)
        if self.toe:
            out = out + self.toe * out * (1.0 - out) ** 3
        return out.astype(np.float32)


IDENTITY = ToneCurve()


def random_tone_curve(rng: np.random.Generator, config: SimulatorConfig = SimulatorConfig()) -> ToneCurve:
    """Draw a camera tone curve (identity with probability ``1 − p_tone_curve``)."""
    if rng.random() >= config.p_tone_curve:
        return IDENTITY
    contrast, gamma = float(rng.uniform(*config.contrast)), float(rng.uniform(*config.gamma))
    toe = float(rng.uniform(*config.toe)) if config.p_toe > 0 and rng.random() < config.p_toe else 0.0
    return ToneCurve(contrast, gamma, toe)


@dataclass(frozen=True)
class Camera:
    """What a camera does between the sensor's linear signal and the file, besides the exposure itself.

    ``black``: linear offset left in the file (``black + (1 − black)·x``; negative crushes, positive lifts);
    ``knee``: highlight roll-off from ``knee`` to full well (``1.0`` = a hard clip); ``tone``: the display
    curve. All three are the camera's *style*: they are applied to the ideal too, so at the right exposure
    the label is exactly zero.
    """

    tone: ToneCurve = field(default_factory=ToneCurve)
    black: float = 0.0
    knee: float = 1.0

    def encode(self, linear: np.ndarray) -> np.ndarray:
        """Linear sensor values (clipped at full well here) → the file's display values (float)."""
        x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
        if self.black:
            x = np.clip(self.black + (1.0 - self.black) * x, 0.0, 1.0)
        if self.knee < 1.0:
            t = np.clip((x - self.knee) / (1.0 - self.knee), 0.0, 1.0)
            x = np.where(x > self.knee, self.knee + (1.0 - self.knee) * (t + t * t - t**3), x)
        return self.tone(linear_to_srgb(x))

    @property
    def is_identity(self) -> bool:
        return self.tone.is_identity and self.black == 0.0 and self.knee >= 1.0


def random_camera(rng: np.random.Generator, config: SimulatorConfig = SimulatorConfig()) -> Camera:
    """Draw a camera: tone curve, black level and highlight roll-off, each with its probability."""
    tone = random_tone_curve(rng, config)
    black = float(rng.uniform(*config.black_level)) if config.p_black_level > 0 and rng.random() < config.p_black_level else 0.0
    knee = float(rng.uniform(*config.rolloff_knee)) if config.p_rolloff > 0 and rng.random() < config.p_rolloff else 1.0
    return Camera(tone, black, knee)


# --------------------------------------------------------------------------------------- EV fields


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates: x, y in [−0.5, 0.5] scaled by aspect so circles stay round."""
    scale = 1.0 / max(h, w)
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) * scale
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) * scale
    return xs[None, :], ys[:, None]


def _signed(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi) * (1 if rng.random() < 0.5 else -1))


def draw_global_ev(rng: np.random.Generator, config: SimulatorConfig = SimulatorConfig()) -> float:
    """A global exposure shift: uniform over the core range, deep below it, bright above it, or
    concentrated near 0 (small, common errors)."""
    lo, hi = config.global_ev
    core_lo, core_hi = max(lo, config.core_ev[0]), min(hi, config.core_ev[1])
    u = rng.random()
    if u < config.p_global_uniform:
        return float(rng.uniform(core_lo, core_hi))
    u -= config.p_global_uniform
    if u < config.p_global_deep and lo < core_lo:
        return float(rng.uniform(lo, core_lo))
    u -= config.p_global_deep
    if u < config.p_global_bright and hi > core_hi:
        return float(rng.uniform(core_hi, hi))
    return float(np.clip(rng.normal(0.0, config.global_ev_sigma), lo, hi))


def gradient_field(h: int, w: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A linear ramp of ``amplitude`` EV across the frame in a random direction (a wrong graduated filter)."""
    x, y = _grid(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    proj = x * np.cos(angle) + y * np.sin(angle)
    span = float(np.abs(np.cos(angle)) * w + np.abs(np.sin(angle)) * h) / max(h, w)
    return (amplitude * proj / max(span, 1e-6)).astype(np.float32)


def vignette_field(h: int, w: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Radial fall-off: ``amplitude`` EV at the corners, 0 at a (slightly shifted) centre."""
    x, y = _grid(h, w)
    cx, cy = rng.uniform(-0.1, 0.1, size=2)
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    corner = (0.5 * w / max(h, w)) ** 2 + (0.5 * h / max(h, w)) ** 2
    return (-amplitude * np.clip(r2 / corner, 0.0, 1.5)).astype(np.float32)


def spot_field(h: int, w: int, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A Gaussian spot light (amplitude > 0) or shadow (< 0)."""
    x, y = _grid(h, w)
    cx = rng.uniform(-0.5, 0.5) * w / max(h, w)
    cy = rng.uniform(-0.5, 0.5) * h / max(h, w)
    sigma = rng.uniform(0.06, 0.35)
    return (amplitude * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))).astype(np.float32)


def _small(rgb: np.ndarray, long_side: int = 48) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = long_side / max(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _upsample_mask(mask_small: np.ndarray, h: int, w: int, blur_frac: float) -> np.ndarray:
    import cv2

    m = cv2.resize(mask_small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, int(round(blur_frac * max(h, w))) | 1)
    return cv2.GaussianBlur(m, (k, k), 0)


def segment_colours(rgb: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8) -> np.ndarray:
    """Deterministic k-means on (lightness, chroma) of a downscaled image → label map of the small image."""
    import cv2

    small = _small(rgb)
    lab = cv2.cvtColor(np.ascontiguousarray(small, dtype=np.float32), cv2.COLOR_RGB2Lab)
    feats = lab.reshape(-1, 3) * np.array([1.5, 1.0, 1.0], dtype=np.float32)  # lightness matters most
    idx = rng.choice(len(feats), size=min(k, len(feats)), replace=False)
    centres = feats[idx].copy()
    for _ in range(iters):
        d = ((feats[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        labels = d.argmin(1)
        for j in range(len(centres)):
            sel = feats[labels == j]
            if len(sel):
                centres[j] = sel.mean(0)
    return labels.reshape(small.shape[:2])


def region_field(rgb: np.ndarray, rng: np.random.Generator, config: SimulatorConfig) -> np.ndarray:
    """EV offsets on 1–2 colour segments, edges softened a little (light falls on objects, not blocks)."""
    h, w = rgb.shape[:2]
    labels = segment_colours(rgb, int(rng.integers(3, 6)), rng)
    out = np.zeros((h, w), np.float32)
    for j in rng.choice(labels.max() + 1, size=int(rng.integers(1, 3)), replace=False):
        out += _signed(rng, config.region_ev) * _upsample_mask(labels == j, h, w, 0.02)
    return out


def luma_mask_field(rgb: np.ndarray, rng: np.random.Generator, config: SimulatorConfig) -> np.ndarray:
    """EV offset on the bright (or dark) part of the scene: a soft threshold of blurred grey level.

    Models the commonest real failure: a backlit scene metered for the subject blows the bright sky, or
    metered for the sky crushes the dark foreground.
    """
    h, w = rgb.shape[:2]
    g = grey(_small(rgb))
    q = float(np.quantile(g, rng.uniform(0.3, 0.8)))
    below, above = g[g < q], g[g >= q]
    if below.size and above.size:  # cut between the two sides' means: a quantile can sit on a flat level
        q = 0.5 * (float(below.mean()) + float(above.mean()))
    soft = rng.uniform(0.03, 0.12)
    bright = 1.0 / (1.0 + np.exp(-(g - q) / soft))
    mask = bright if rng.random() < 0.5 else 1.0 - bright
    return _signed(rng, config.luma_mask_ev) * _upsample_mask(mask, h, w, 0.01)


def random_ev_field(
    rgb: np.ndarray, rng: np.random.Generator, config: SimulatorConfig = SimulatorConfig()
) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw an EV field for `rgb` (H×W×3 guide image): global shift plus random local parts."""
    h, w = rgb.shape[:2]
    g = draw_global_ev(rng, config)
    ev = np.full((h, w), g, np.float32)
    parts: list[str] = []
    if config.p_local < 1.0 and rng.random() >= config.p_local:  # a global shift alone
        return ev, {"global_ev": g, "local": parts}
    if rng.random() < config.p_gradient:
        ev += gradient_field(h, w, rng, _signed(rng, config.gradient_ev))
        parts.append("gradient")
    if rng.random() < config.p_vignette:
        ev += vignette_field(h, w, rng, float(rng.uniform(*config.vignette_ev)))
        parts.append("vignette")
    if rng.random() < config.p_spots:
        for _ in range(int(rng.integers(1, config.max_spots + 1))):
            ev += spot_field(h, w, rng, _signed(rng, config.spot_ev))
        parts.append("spots")
    if rng.random() < config.p_regions:
        ev += region_field(rgb, rng, config)
        parts.append("regions")
    if rng.random() < config.p_luma_mask:
        ev += luma_mask_field(rgb, rng, config)
        parts.append("luma_mask")
    np.clip(ev, *config.ev_field_range, out=ev)
    return ev, {"global_ev": g, "local": parts}


# --------------------------------------------------------------------------------------- camera


_NOISE_BANK: np.ndarray | None = None
NOISE_BANK_SIZE = 1 << 22


def _noise_bank() -> np.ndarray:
    """A fixed bank of standard normal values; slices at random offsets are much cheaper than fresh draws."""
    global _NOISE_BANK
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20241128).standard_normal(NOISE_BANK_SIZE, dtype=np.float32)
    return _NOISE_BANK


def standard_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Standard normal noise of ``shape``, deterministic in ``rng`` (a random slice of the bank, random sign)."""
    n = int(np.prod(shape))
    bank = _noise_bank()
    if n > bank.size // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(0, bank.size - n))
    out = bank[start : start + n].reshape(shape)
    return -out if rng.random() < 0.5 else out


def sensor(
    linear: np.ndarray, rng: np.random.Generator, shot: float, read: float, bits: int = 12,
    iso_gain: float = 1.0,
) -> np.ndarray:
    """Poisson–Gaussian noise, clipping at full well, raw quantisation.

    ``iso_gain`` g > 1 is a camera that received ``1/g`` of the light and amplified it: the noise variance
    becomes ``g·shot·x + g²·read`` and the raw levels are ``g`` times coarser (banding in pushed shadows).
    """
    x = np.maximum(linear, 0.0)
    if shot > 0 or read > 0:
        std = np.sqrt(iso_gain * shot * np.minimum(x, 1.0) + iso_gain * iso_gain * read)
        x = x + std * standard_noise(x.shape, rng)
    levels = float(2**bits - 1) / max(1.0, iso_gain)
    return (np.round(np.clip(x, 0.0, 1.0) * levels) / levels).astype(np.float32)


def quantise8(rgb: np.ndarray) -> np.ndarray:
    """Round to 8-bit levels (what a file holds), staying float32 in [0, 1]."""
    return (np.round(np.clip(rgb, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at `quality` (OpenCV), float32 RGB in [0, 1] in and out."""
    import cv2

    u8 = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _as_camera(camera: "Camera | ToneCurve") -> Camera:
    return camera if isinstance(camera, Camera) else Camera(camera)


def render(linear: np.ndarray, ev: np.ndarray | float, camera: "Camera | ToneCurve" = IDENTITY) -> np.ndarray:
    """Noise-free camera rendering: ``camera(clip(linear · 2**ev))`` (float, not quantised)."""
    gain = np.exp2(np.asarray(ev, dtype=np.float32))
    if gain.ndim == 2:
        gain = gain[..., None]
    return _as_camera(camera).encode(linear * gain)


def render_ideal(ideal: np.ndarray, camera: Camera) -> np.ndarray:
    """What ``camera`` makes of a well-exposed sRGB photo at the right exposure (its style only)."""
    if camera.black == 0.0 and camera.knee >= 1.0:
        return camera.tone(ideal)
    return camera.encode(srgb_to_linear(ideal))


def _iso_gain(rng: np.random.Generator, config: SimulatorConfig, global_ev: float) -> float:
    """ISO-like gain of a pushed exposure: likelier and larger when the frame is dark."""
    if config.p_iso_push <= 0 or rng.random() >= config.p_iso_push:
        return 1.0
    stops = float(rng.uniform(*config.iso_push_stops))
    return float(2.0 ** (stops if global_ev < 0 else 0.4 * stops))


def _finish(
    linear: np.ndarray,
    ev: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    config: SimulatorConfig,
    params: dict[str, Any],
    untouched: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (observed input image, noise-free rendering used for the label)."""
    clean = render(linear, ev, camera)
    if untouched:
        return quantise8(clean), clean
    gain = np.exp2(ev)[..., None]
    if rng.random() < config.p_noise:
        shot = float(np.exp(rng.uniform(*np.log(config.shot_noise))))
        read = float(np.exp(rng.uniform(*np.log(config.read_noise))))
        iso = _iso_gain(rng, config, float(params.get("global_ev", 0.0)))
        params.update(shot_noise=shot, read_noise=read, iso_gain=iso)
        observed = camera.encode(sensor(linear * gain, rng, shot, read, iso_gain=iso))
    else:
        observed = clean
    observed = quantise8(observed)
    if rng.random() < config.p_jpeg:
        q = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        params["jpeg_quality"] = q
        observed = jpeg_roundtrip(observed, q)
    return observed, clean


def simulate_photo(
    ideal: np.ndarray, rng: np.random.Generator, config: SimulatorConfig = SimulatorConfig()
) -> Sample:
    """Re-expose a well-exposed sRGB photo (H×W×3 float32 in [0, 1]) and label it exactly."""
    ideal = np.asarray(ideal, dtype=np.float32)
    h, w = ideal.shape[:2]
    camera = random_camera(rng, config)
    params: dict[str, Any] = {"kind": "photo"}
    if rng.random() < config.p_original:
        ev = np.zeros((h, w), np.float32)
        untouched = rng.random() < config.p_original_untouched
        if untouched:
            camera = Camera()
        params.update(global_ev=0.0, local=[], original=True)
    else:
        ev, info = random_ev_field(ideal, rng, config)
        params.update(info, original=False)
        untouched = False
    params.update(contrast=camera.tone.contrast, gamma=camera.tone.gamma, toe=camera.tone.toe,
                  black=camera.black, knee=camera.knee)
    ideal_rendered = render_ideal(ideal, camera)
    observed, clean = _finish(srgb_to_linear(ideal), ev, camera, rng, config, params, untouched)
    res = residual_from_grey(grey(ideal_rendered), grey(clean)).astype(np.float32)
    if params.get("original"):
        res[:] = 0.0  # exact zero, not float round-off of t(srgb(linear(x))) vs t(x)
    return Sample(observed, res, ideal_rendered, ev, params)


def simulate_radiance(
    radiance: np.ndarray,
    ideal: np.ndarray,
    rng: np.random.Generator,
    config: SimulatorConfig = SimulatorConfig(),
) -> Sample:
    """Expose real scene radiance (linear, metered so 1.0 is full well at 0 EV) against a fused ideal.

    The tone curve stays the identity here because the ideal (an exposure fusion, :mod:`.hdr`) was
    rendered with plain sRGB (black level and highlight roll-off may still be drawn: they are applied to
    the ideal too); even at 0 EV the label is non-zero where one exposure cannot hold the
    scene's range (blown windows, crushed shadows) — real dynamic-range failures, not simulated ones.
    With probability ``p_original`` the sample is the fused ideal itself (noise and JPEG as for photo
    originals, or untouched), labelled 0.
    """
    radiance = np.asarray(radiance, dtype=np.float32)
    ideal = np.asarray(ideal, dtype=np.float32)
    if rng.random() < config.p_original:
        # The fused ideal itself, as a phone's HDR mode delivers such a scene: well exposed, label 0 — the
        # validation set's HDR "originals" are exactly this, so training must show them too.
        h, w = ideal.shape[:2]
        ev = np.zeros((h, w), np.float32)
        untouched = rng.random() < config.p_original_untouched
        params = {"kind": "hdr", "global_ev": 0.0, "local": [], "original": True, "contrast": 0.0, "gamma": 1.0}
        observed, _ = _finish(srgb_to_linear(ideal), ev, Camera(), rng, config, params, untouched)
        return Sample(observed, np.zeros((h, w), np.float32), ideal, ev, params)
    ev, info = random_ev_field(ideal, rng, config)
    base = random_camera(rng, config) if (config.p_black_level > 0 or config.p_rolloff > 0) else Camera()
    camera = Camera(IDENTITY, base.black, base.knee)
    params: dict[str, Any] = {"kind": "hdr", **info, "original": False, "contrast": 0.0, "gamma": 1.0,
                              "black": camera.black, "knee": camera.knee}
    observed, clean = _finish(radiance, ev, camera, rng, config, params, False)
    ideal_rendered = render_ideal(ideal, camera)
    res = residual_from_grey(grey(ideal_rendered), grey(clean)).astype(np.float32)
    return Sample(observed, res, ideal_rendered, ev, params)


def render_ev(
    ideal: np.ndarray, ev: float, tone: ToneCurve = IDENTITY, linear: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render a photo at a pure global EV shift (for evaluation sweeps): no noise, no JPEG, 8-bit.

    Args:
        ideal: Well-exposed sRGB photo, H×W×3 float32 in [0, 1].
        ev: Exposure shift in stops (+1 = twice the light).
        tone: Camera tone curve applied to both ideal and observed.
        linear: Optional scene radiance to expose instead of the linearised ideal (HDR sources).

    Returns:
        ``(observed, residual)``: the 8-bit-quantised observed image and ``grey(t(ideal)) − grey(observed)``.
    """
    ideal = np.asarray(ideal, dtype=np.float32)
    lin = srgb_to_linear(ideal) if linear is None else np.asarray(linear, np.float32)
    observed = quantise8(render(lin, float(ev), tone))
    ideal_rendered = tone(ideal) if linear is None else ideal
    res = residual_from_grey(grey(ideal_rendered), grey(observed)).astype(np.float32)
    if ev == 0 and linear is None:
        observed = quantise8(ideal_rendered)
        res = np.zeros(ideal.shape[:2], np.float32)
    return observed, res


#: The first simulator's settings (validation set versions 1 and 2 were rendered with these, with
#: ``p_original=0``): ±3 EV, none of the camera-realism parts. Draws with it are bit-identical to that
#: simulator's, so the fixed validation set stays reproducible.
LEGACY_CONFIG = SimulatorConfig(
    global_ev=(-3.0, 3.0), core_ev=(-3.0, 3.0), p_global_uniform=0.65, p_global_deep=0.0, p_global_bright=0.0,
    ev_field_range=(-EV_LIMIT, EV_LIMIT), p_iso_push=0.0, p_black_level=0.0, p_rolloff=0.0, p_toe=0.0,
)


def config_dict(config: SimulatorConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (recorded in model cards and DATA.md)."""
    return asdict(config)


__all__ = [
    "Camera",
    "EV_FIELD_RANGE",
    "EV_LIMIT",
    "LEGACY_CONFIG",
    "random_camera",
    "render_ideal",
    "IDENTITY",
    "Sample",
    "SimulatorConfig",
    "ToneCurve",
    "config_dict",
    "draw_global_ev",
    "jpeg_roundtrip",
    "quantise8",
    "random_ev_field",
    "random_tone_curve",
    "render",
    "render_ev",
    "sensor",
    "simulate_photo",
    "simulate_radiance",
]
