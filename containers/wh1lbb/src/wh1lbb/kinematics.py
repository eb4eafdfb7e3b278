"""Four-vectors as numpy arrays (E, px, py, pz), last axis; GeV throughout."""

from __future__ import annotations

import numpy as np


def two_body_momentum(m_parent, m1, m2):
    """Momentum of either daughter in the rest frame of the parent."""
    term = (m_parent**2 - (m1 + m2) ** 2) * (m_parent**2 - (m1 - m2) ** 2)
    return np.sqrt(np.maximum(term, 0.0)) / (2.0 * m_parent)


def four_vector(p, direction, mass):
    """Four-vector of momentum ``p`` along the unit vector ``direction``."""
    p = np.asarray(p, dtype=float)
    energy = np.sqrt(p**2 + mass**2)
    return np.concatenate([energy[..., None], p[..., None] * direction], axis=-1)


def isotropic_directions(rng, n):
    cos_theta = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=-1)


def boost(p4, beta):
    """Boost four-vectors ``p4`` by velocity ``beta`` (lab = rest frame moving at beta)."""
    beta = np.asarray(beta, dtype=float)
    b2 = np.sum(beta**2, axis=-1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p4[..., 1:], axis=-1)
    # Avoid 0/0 for particles at rest in the frame that does not move.
    gamma2 = np.where(b2 > 0.0, (gamma - 1.0) / np.where(b2 > 0.0, b2, 1.0), 0.0)
    energy = gamma * (p4[..., 0] + bp)
    space = p4[..., 1:] + (gamma2 * bp + gamma * p4[..., 0])[..., None] * beta
    return np.concatenate([energy[..., None], space], axis=-1)


def velocity(p4):
    return p4[..., 1:] / p4[..., 0:1]


def decay(rng, parent, m_parent, m1, m2):
    """Isotropic two-body decay of ``parent`` (lab four-vectors) into masses m1, m2."""
    n = parent.shape[0]
    p = np.broadcast_to(two_body_momentum(m_parent, m1, m2), (n,))
    direction = isotropic_directions(rng, n)
    beta = velocity(parent)
    return boost(four_vector(p, direction, m1), beta), boost(four_vector(p, -direction, m2), beta)


def pt(p4):
    return np.hypot(p4[..., 1], p4[..., 2])


def eta(p4):
    p = np.linalg.norm(p4[..., 1:], axis=-1)
    return np.arctanh(np.clip(p4[..., 3] / np.where(p > 0.0, p, 1.0), -1 + 1e-12, 1 - 1e-12))


def mass(p4):
    m2 = p4[..., 0] ** 2 - np.sum(p4[..., 1:] ** 2, axis=-1)
    return np.sqrt(np.maximum(m2, 0.0))


def transverse_mass(lepton, met_xy):
    """mT of a (massless) lepton and the missing transverse momentum vector."""
    lep_pt = pt(lepton)
    met = np.hypot(met_xy[..., 0], met_xy[..., 1])
    dot = lepton[..., 1] * met_xy[..., 0] + lepton[..., 2] * met_xy[..., 1]
    return np.sqrt(np.maximum(2.0 * (lep_pt * met - dot), 0.0))


def contransverse_mass(a, b):
    """mCT of two visible objects: sqrt((ET_a + ET_b)^2 - |pT_a - pT_b|^2)."""
    et_a = np.sqrt(pt(a) ** 2 + mass(a) ** 2)
    et_b = np.sqrt(pt(b) ** 2 + mass(b) ** 2)
    dx = a[..., 1] - b[..., 1]
    dy = a[..., 2] - b[..., 2]
    return np.sqrt(np.maximum((et_a + et_b) ** 2 - dx**2 - dy**2, 0.0))
