"""The training figure of a model trained here: loss and logit scale against the step, and the held-out
concept-level accuracy per concept against the concept's training frequency."""

from __future__ import annotations

import numpy as np


def plot_training(curve: dict, metrics: dict, label: str = ""):
    """Three panels: the contrastive loss (Eq. 7 on each batch), the logit scale, and the held-out
    image→concept accuracy of each concept against its training frequency (chance dashed)."""
    from clipgeom.plots import style

    fig, axes = style.subplots(1, 3, height=2.7)
    a, b, c = axes[0]
    step = np.asarray(curve["step"], float)
    a.plot(step, curve["loss"], color="k", lw=1.2)
    a.set_xlabel("step")
    a.set_ylabel("contrastive loss (batch)")
    a.set_title(f"{metrics['logits']} logits, batch {metrics['batch_size']}")
    b.plot(step, curve["logit_scale"], color="0.25", lw=1.2)  # not a modality: no image/text colour
    b.set_xlabel("step")
    b.set_ylabel("logit scale $s$")
    b.set_title("learned" if metrics["logit_scale"] == "learned" else f"fixed at {metrics['logit_scale']:g}")
    freq = metrics["train_frequencies"]
    acc = metrics["heldout_per_concept_accuracy"]
    names = sorted(freq, key=freq.get)
    c.semilogx([freq[n] for n in names], [acc[n] for n in names], "o", ms=4, color="tab:purple")
    style.log_ticks(c, [freq[n] for n in names])
    c.axhline(metrics["chance_accuracy"], color="0.5", ls="--", lw=1, label=f"chance {metrics['chance_accuracy']:.3f}")
    c.set_xlabel("concept's training frequency")
    c.set_ylabel("held-out concept accuracy")
    c.set_ylim(-0.02, 1.02)
    c.set_title(f"overall {metrics['heldout_concept_accuracy']:.3f} (sampling: {metrics['sampling']})")
    c.legend(loc="upper left")
    if label:
        style.suptitle(fig, label)
    return fig
