"""Every figure of the workflow, rendered from small synthetic inputs and checked automatically.

The inputs come from the stages' own code on a small synthetic world (concepts with Zipf training frequencies,
image and text clouds offset from each other: a double ellipsoid), plus the edge cases that used to draw badly:
a sweep in which no pair is misclassified, N <= d for the whitening figure. Each figure is checked for

- no text and no panel under the figure's title (text boxes measured with the figure's renderer);
- no empty panel without a note saying why (no made-up ticks on a panel without data);
- every axis that shows data labelled (an axis label, or category tick labels);
- text of 8-10 pt, a width that fits a page (:data:`clipgeom.plots.style.PAGE_WIDTH`, saved PNG included);
- the modality colours (image, text) the same in every legend;
- the dataset x model in the title, where the figure shows one dataset x model.

``CLIPGEOM_FIGURE_DIR=/some/dir pytest tests/test_figures.py`` also writes every figure there as PNG, to look at.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from clipgeom.h5io import Embeddings, write_embeddings  # noqa: E402
from clipgeom.outputs import PNG_DPI, save_figure  # noqa: E402
from clipgeom.plots import style  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABEL = "(world × tiny)"


# ------------------------------------------------------------------ synthetic inputs
def _world(n_concepts=8, n_images=240, d=32, seed=0) -> Embeddings:
    """A small synthetic world: concept c has training frequency ~ 1/(c+1); an item is its concept's centroid
    plus noise, shifted by its modality's mean (the two ellipsoids), one caption per image."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(n_concepts, d))
    concept = np.arange(n_images) % n_concepts
    m_img, m_txt = rng.normal(size=d) * 2.0, rng.normal(size=d) * 2.0
    scales = np.linspace(2.0, 0.3, d)  # an ellipsoid, not a sphere
    image = centroids[concept] + rng.normal(size=(n_images, d)) * scales + m_img
    text = centroids[concept] + rng.normal(size=(n_images, d)) * scales * 1.2 + m_txt
    names = np.asarray([f"c{c}" for c in concept], dtype=object)
    freq = 1.0 / (concept + 1.0)
    return Embeddings(
        image=image.astype(np.float32),
        text=text.astype(np.float32),
        image_id=np.arange(n_images),
        image_file=np.asarray([f"w_{i:05d}.png" for i in range(n_images)], dtype=object),
        text_id=np.arange(n_images),
        text_image_index=np.arange(n_images),
        caption=np.asarray([f"a {'red blue green'.split()[c % 3]} shape number {c}" for c in concept], dtype=object),
        attrs={"model": "tiny", "pretrained": "none", "logit_scale": 20.0},
        image_concept=names,
        image_train_frequency=freq,
        text_concept=names.copy(),
        text_train_frequency=freq.copy(),
    )


def _defaults(stage: str, **over) -> dict:
    from clipgeom.scripting import stage_defaults

    return {**stage_defaults(REPO / "workflow" / "scripts" / f"{stage}.py", {}), **over}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Everything the figure functions take, computed once by the stages' code."""
    import logging

    from clipgeom import conformity as cf
    from clipgeom import vslerp as vs
    from clipgeom.blur import blur_simulation
    from clipgeom.grids import alpha_grid
    from clipgeom.kl import shared_bins
    from clipgeom.loss import GEOMETRIES
    from clipgeom.stages import geometry as sg
    from clipgeom.stages.frequency import compute_concept_frequency
    from clipgeom.stages.loss import compute_alpha_sweep

    log = logging.getLogger("test_figures")
    tmp = tmp_path_factory.mktemp("figures")
    world = _world()
    path = tmp / "world.h5"
    write_embeddings(path, world)
    small = _world(n_images=20, d=32, seed=1)  # N <= d: whitening is degenerate
    small_path = tmp / "small.h5"
    write_embeddings(small_path, small)
    # every pair correctly classified: the misclassified subset is empty
    rng = np.random.default_rng(3)
    img = rng.normal(size=(40, 16)) * 3
    easy = Embeddings(
        image=img.astype(np.float32),
        text=(img + rng.normal(size=img.shape) * 0.01).astype(np.float32),
        image_id=np.arange(40),
        image_file=np.asarray([f"{i}.png" for i in range(40)], dtype=object),
        text_id=np.arange(40),
        text_image_index=np.arange(40),
        caption=np.asarray([f"caption {i}" for i in range(40)], dtype=object),
        attrs={"model": "tiny", "pretrained": "none", "logit_scale": 100.0},
    )
    easy_path = tmp / "easy.h5"
    write_embeddings(easy_path, easy)

    out = {"world": world}
    out["sep"] = sg.compute_separability(path, _defaults("separability"), log).plot
    out["shell"] = sg.compute_thin_shell(path, _defaults("thin_shell"), log).plot
    out["cov"] = sg.compute_covariance(path, _defaults("covariance"), log).plot
    out["cov_small"] = sg.compute_covariance(small_path, _defaults("covariance"), log).plot
    out["origin"] = sg.compute_origin_distance(path, _defaults("origin_distance"), log).plot
    p = _defaults("alpha_sweep", alpha_step=0.25)
    out["sweep"] = compute_alpha_sweep(path, p, log, progress=io.StringIO())
    out["sweep_easy"] = compute_alpha_sweep(easy_path, p, log, progress=io.StringIO())
    out["geometries"] = list(GEOMETRIES)
    out["blur"] = blur_simulation(n=300, dim=64, centre=[10.0, 5.0, 5.0], seed=0)
    out["freq_training"] = compute_concept_frequency(path, _defaults("concept_frequency"), None, log)
    no_concepts = Embeddings(**{**world.__dict__, "image_concept": None, "image_train_frequency": None})
    no_concepts.text_concept = no_concepts.text_train_frequency = None
    proxy_path = tmp / "proxy.h5"
    write_embeddings(proxy_path, no_concepts)
    out["freq_proxy"] = compute_concept_frequency(proxy_path, _defaults("concept_frequency"), None, log)

    # conformity (Eqs. 10-11), as workflow/scripts/conformity.py computes it
    panels, conf_all = {}, {}
    for mod in ("image", "text"):
        x = getattr(world, mod).astype(np.float64)
        conf, cos_m, _ = cf.conformity_and_cosine(x)
        fit = cf.fit_estimated_conformity(conf, cos_m)
        panels[mod] = dict(estimated=fit.predict(cos_m), exact=conf, a=fit.a, b=fit.b, pearson=fit.pearson, n=len(x))
        conf_all[mod] = conf
    out["conf_panels"], out["conf"] = panels, conf_all
    order = np.argsort(-conf_all["image"])
    thumb = Image.new("RGB", (32, 32), (200, 60, 40))
    out["most"] = [{"label": world.image_file[i], "value": conf_all["image"][i], "thumb": thumb} for i in order[:8]]
    out["least"] = [{"label": world.image_file[i], "value": conf_all["image"][i], "thumb": None} for i in order[-8:]]
    tord = np.argsort(-conf_all["text"])
    out["most_t"] = [{"label": world.caption[i], "value": conf_all["text"][i]} for i in tord[:8]]
    out["least_t"] = [{"label": world.caption[i], "value": conf_all["text"][i]} for i in tord[-8:]]
    # KL matching (Figs. 10-11)
    alphas = alpha_grid(-1.0, 2.0, 0.25, include_zero=False)
    x_img = world.image.astype(np.float64)
    by_alpha = cf.shifted_conformity(x_img, alphas, x_img.mean(0))
    kl = cf.kl_curve(by_alpha, conf_all["text"], 30, 0.5)
    out["kl"] = (alphas, kl, float(alphas[int(np.argmin(kl))]))
    out["edges"] = shared_bins(conf_all["image"], conf_all["text"], bins=30)
    # vSLERP (Eq. 12), as workflow/scripts/vslerp.py computes it
    V = x_img
    m = V.mean(0)
    theta = vs.path_fractions(9)
    paths, rows = [], []
    colours = [(220, 40, 40), (40, 80, 220), (40, 160, 60), (240, 200, 40)]
    for pi, (ra, rb) in enumerate([(0, 9), (3, 17)]):
        for alpha in (-1.0, 0.0, 1.0, 2.0):
            pts = vs.vslerp(V[ra], V[rb], theta, alpha, m)
            nn, nc = vs.nearest_rows(pts, V, 1)
            paths.append(
                {
                    "pair": pi,
                    "alpha": alpha,
                    "theta": theta,
                    "cos_to_mean": vs.cosine_to_mean(pts, m),
                    "norm": np.linalg.norm(pts, axis=1),
                }
            )
            tiles = [
                {
                    "thumb": Image.new("RGB", (32, 32), colours[int(i) % 4]),
                    "label": world.image_file[i],
                    "value_text": f"{i}\ncos {c:.3f}",
                }
                for i, c in zip(nn[:, 0], nc[:, 0], strict=True)
            ]
            rows.append({"title": f"pair {pi}: {ra}→{rb}\nα = {alpha:g}", "tiles": tiles})
    out["vslerp_paths"], out["vslerp_rows"], out["steps"] = paths, rows, len(theta)
    return out


def _summaries():
    def one(dataset, model, k):
        return {
            "dataset": dataset,
            "model": model,
            "thin_shell": {"image": {"rel_error": 0.002 * k, "mu_norm": 7.5}, "text": {"rel_error": 0.002}},
            "covariance": {
                "image": {"mean_to_std_ratio": 0.9 + 0.1 * k, "effective_rank": 120 * k},
                "text": {"mean_to_std_ratio": 1.0 + 0.05 * k, "effective_rank": 90 * k},
                "mean_angle_deg": 80.0 + k,
            },
            "separability": {"svm_top2_accuracy": 1.0 - 0.01 * k, "n_tag_features": 9 + k, "max_sep": 3.1 * k},
            "alpha_sweep": {"image_shift": {"loss_at_zero": 1.8 + 0.1 * k, "accuracy_at_zero": 0.6}},
            "conformity": {"image": {"pearson": 0.9999, "a": 1.1 * k}, "text": {"pearson": 0.9998, "a": 0.8}},
            "kl_matching": {"kl_at_zero": 0.4 * k, "argmin_alpha": 0.3},
        }

    return [one("coco", "ViT-B-32", 1), one("coco", "ViT-L-14", 2), one("world", "tiny-a", 3)]


def _training():
    steps = np.arange(0, 200, 10)
    names = [f"c{i}" for i in range(8)]
    curve = {"step": steps, "loss": 3.0 * np.exp(-steps / 80) + 0.5, "logit_scale": 14.3 + steps / 100}
    metrics = {
        "logits": "cosine",
        "batch_size": 64,
        "logit_scale": "learned",
        "train_frequencies": {n: 1.0 / (i + 1) for i, n in enumerate(names)},
        "heldout_per_concept_accuracy": {n: 0.9 - 0.1 * i for i, n in enumerate(names)},
        "chance_accuracy": 1 / 8,
        "heldout_concept_accuracy": 0.55,
        "sampling": "law",
    }
    return curve, metrics


def _build(name: str, x: dict):
    """(figure, whether its title must carry LABEL)."""
    from clipgeom.compare import comparison_table, headline_keys, numeric_columns
    from clipgeom.paper import PAPER_VALUES
    from clipgeom.plots import compare as pcm
    from clipgeom.plots import conformity as pc
    from clipgeom.plots import frequency as pf
    from clipgeom.plots import geometry as gp
    from clipgeom.plots import loss as lp
    from clipgeom.plots import train as pt

    sep, shell, cov, origin = x["sep"], x["shell"], x["cov"], x["origin"]
    builders = {
        "separability/sep_sorted": lambda: gp.plot_sep_sorted(sep["sep"], sep["tag_threshold"], LABEL),
        "separability/top_mean_over_std": lambda: gp.plot_top_mean_std(sep["mean_over_std"], sep["top_k"], LABEL),
        "separability/top_feature_hist": lambda: gp.plot_top_feature_histograms(
            sep["hist_features"], sep["hist_edges"], sep["hist_counts"], sep["hist_kl"], LABEL
        ),
        "separability/svm_top2": lambda: gp.plot_svm_top2(
            sep["svm_x"], sep["svm_y"], sep["top2"], sep["svm_w"], sep["svm_b"], sep["svm_accuracy"], LABEL
        ),
        "thin_shell/centred_features": lambda: gp.plot_centred_features(shell, shell["n_features"], LABEL),
        "thin_shell/norms": lambda: gp.plot_norms(shell, 40, LABEL),
        "covariance/variance_hist": lambda: gp.plot_variance_hist(cov, 40, LABEL),
        "covariance/odd_hist": lambda: gp.plot_odd_hist(cov, 40, LABEL),
        "covariance/eigen_spectrum": lambda: gp.plot_eigen_spectrum(cov, LABEL),
        "covariance/whitening": lambda: gp.plot_whitening(cov, 40, LABEL),
        "covariance/whitening_n_le_d": lambda: gp.plot_whitening(x["cov_small"], 40, LABEL),
        "covariance/whitening_off": lambda: gp.placeholder("whitening disabled (stages.covariance.whiten: false)"),
        "origin_distance/origin_distance": lambda: gp.plot_origin_distance(origin, 40, LABEL),
        "origin_distance/root_cosine_distance": lambda: gp.plot_root_distance(
            origin, origin["near_root_threshold"], 40, LABEL
        ),
        "alpha_sweep/loss_curves": lambda: lp.plot_loss_curves(
            x["sweep"].alphas, {s: x["sweep"].curves[("cosine", s)] for s in ("image", "text")}, label=LABEL, scale=20
        ),
        "alpha_sweep/loss_curves_no_misclassified": lambda: lp.plot_loss_curves(
            x["sweep_easy"].alphas,
            {s: x["sweep_easy"].curves[("cosine", s)] for s in ("image", "text")},
            label=LABEL,
            scale=100,
        ),
        "alpha_sweep/geometry_curves": lambda: lp.plot_geometry_curves(
            x["sweep"].alphas, x["sweep"].curves, x["geometries"], label=LABEL, scale=20
        ),
        "alpha_sweep/geometry_curves_no_misclassified": lambda: lp.plot_geometry_curves(
            x["sweep_easy"].alphas, x["sweep_easy"].curves, x["geometries"], label=LABEL, scale=100
        ),
        "blur_simulation/blur_histograms": lambda: lp.plot_blur(x["blur"], bins=30),
        "conformity/conformity_scatter": lambda: pc.scatter_exact_vs_estimated(x["conf_panels"], LABEL),
        "conformity/extremes_images": lambda: pc.extremes_images(x["most"], x["least"], LABEL),
        "conformity/extremes_captions": lambda: pc.extremes_captions(x["most_t"], x["least_t"], LABEL),
        "kl_matching/distributions": lambda: pc.distributions(
            x["conf"]["image"], x["conf"]["text"], x["edges"], 0.42, label=LABEL
        ),
        "kl_matching/kl_curve": lambda: pc.kl_curve(*x["kl"], label=LABEL),
        "conformity_compare/compare": lambda: pc.compare_distributions(
            "world",
            x["conf"],
            {"generated": {"image": x["conf"]["image"][:100] * 0.9}, "captions": {"text": x["conf"]["text"][:50]}},
            bins=30,
            label=LABEL,
        ),
        "conformity_compare/compare_no_sets": lambda: pc.compare_distributions("world", x["conf"], {}, label=LABEL),
        "vslerp/vslerp_neighbours": lambda: pc.vslerp_neighbours(x["vslerp_rows"], x["steps"], LABEL),
        "vslerp/vslerp_stats": lambda: pc.vslerp_stats(x["vslerp_paths"], LABEL),
        "concept_frequency/training": lambda: pf.plot_concept_frequency(
            x["freq_training"].plot, x["freq_training"].source, LABEL
        ),
        "concept_frequency/proxy": lambda: pf.plot_concept_frequency(
            x["freq_proxy"].plot, x["freq_proxy"].source, LABEL
        ),
        "models/training": lambda: pt.plot_training(*_training(), label=LABEL),
    }
    cross = {
        "comparison/headline_grid": lambda: pcm.headline_grid(
            *(lambda c, r: (r, headline_keys(c, r)))(*comparison_table(_summaries())), paper=PAPER_VALUES
        ),
        "comparison/all_numbers": lambda: pcm.all_numbers(
            *(lambda c, r: (r, numeric_columns(c, r)))(*comparison_table(_summaries()))
        ),
        "comparison/headline_grid_empty": lambda: pcm.headline_grid([], []),
    }
    if name in builders:
        return builders[name](), not name.startswith(("blur_simulation", "covariance/whitening_off"))
    return cross[name](), False


FIGURES = [
    "separability/sep_sorted",
    "separability/top_mean_over_std",
    "separability/top_feature_hist",
    "separability/svm_top2",
    "thin_shell/centred_features",
    "thin_shell/norms",
    "covariance/variance_hist",
    "covariance/odd_hist",
    "covariance/eigen_spectrum",
    "covariance/whitening",
    "covariance/whitening_n_le_d",
    "covariance/whitening_off",
    "origin_distance/origin_distance",
    "origin_distance/root_cosine_distance",
    "alpha_sweep/loss_curves",
    "alpha_sweep/loss_curves_no_misclassified",
    "alpha_sweep/geometry_curves",
    "alpha_sweep/geometry_curves_no_misclassified",
    "blur_simulation/blur_histograms",
    "conformity/conformity_scatter",
    "conformity/extremes_images",
    "conformity/extremes_captions",
    "kl_matching/distributions",
    "kl_matching/kl_curve",
    "conformity_compare/compare",
    "conformity_compare/compare_no_sets",
    "vslerp/vslerp_neighbours",
    "vslerp/vslerp_stats",
    "concept_frequency/training",
    "concept_frequency/proxy",
    "models/training",
    "comparison/headline_grid",
    "comparison/all_numbers",
    "comparison/headline_grid_empty",
]


# ------------------------------------------------------------------ the checks
def _drawn_ticklabels(ax, which: str, minor: bool = False) -> list:
    """The tick labels drawn: those inside the view limits (the tick list also holds ticks beyond them)."""
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    eps = 1e-9 * max(abs(lo), abs(hi), 1.0)
    labels = ax.get_xticklabels(minor=minor) if which == "x" else ax.get_yticklabels(minor=minor)
    return [t for t in labels if lo - eps <= t.get_position()[0 if which == "x" else 1] <= hi + eps]


def _texts(fig):
    """Every visible, non-empty text of the figure with where it belongs: (text, owner axes or None)."""
    out = [(t, None) for t in fig.texts]
    if fig._suptitle is not None:
        out.append((fig._suptitle, None))
    for leg in fig.legends:
        out += [(t, None) for t in leg.get_texts()] + ([(leg.get_title(), None)] if leg.get_title() else [])
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        own = [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.axison:
            own += [ax.xaxis.label, ax.yaxis.label, ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
            own += _drawn_ticklabels(ax, "x") + _drawn_ticklabels(ax, "y")
        leg = ax.get_legend()
        if leg is not None:
            own += list(leg.get_texts()) + [leg.get_title()]
        out += [(t, ax) for t in own]
    return [(t, ax) for t, ax in out if t.get_visible() and t.get_text().strip()]


def _is_reference_line(line, ax) -> bool:
    """axvline/axhline: drawn in axes coordinates along one direction, not data."""
    return line.get_transform() != ax.transData


def _has_data(ax) -> bool:
    for line in ax.lines:
        if _is_reference_line(line, ax):
            continue
        y = np.asarray(line.get_ydata(), float)
        if y.size and np.isfinite(y).any():
            return True
    if ax.patches or ax.images:
        return True
    for c in ax.collections:
        if len(c.get_offsets()) or len(c.get_paths()):
            return True
    return False


def _categorical(labels) -> bool:
    for t in labels:
        s = t.get_text().strip()
        if not s or s.startswith("$"):
            continue
        try:
            float(s.replace("\N{MINUS SIGN}", "-"))
        except ValueError:
            return True
    return False


def _colour(handle):
    for get in ("get_color", "get_facecolor", "get_edgecolor"):
        if hasattr(handle, get):
            c = getattr(handle, get)()
            c = np.asarray(mcolors.to_rgba_array(c))
            if c.size:
                return c[0, :3]
    return None


def figure_problems(fig, label: str | None = None) -> list[str]:
    """What is wrong with a figure (empty when nothing is)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    problems = []
    texts = _texts(fig)
    sup = fig._suptitle
    if sup is not None and sup.get_text().strip():
        sb = sup.get_window_extent(r)
        for t, _ in texts:
            if t is sup:
                continue
            if t.get_window_extent(r).overlaps(sb):
                problems.append(f"text {t.get_text()!r} overlaps the figure title")
        for ax in fig.axes:
            if ax.get_visible() and (ax.axison or ax.images) and ax.get_window_extent(r).overlaps(sb):
                problems.append(f"panel {ax.get_title()!r} lies under the figure title")
    for ax in fig.axes:  # tick labels (major and minor) of one axis running into each other
        if not (ax.get_visible() and ax.axison):
            continue
        for which in ("x", "y"):
            labels = _drawn_ticklabels(ax, which) + _drawn_ticklabels(ax, which, minor=True)
            ext = [(t.get_text(), t.get_window_extent(r)) for t in labels if t.get_visible() and t.get_text()]
            for i, (s1, b1) in enumerate(ext):
                for s2, b2 in ext[i + 1 :]:
                    if b1.overlaps(b2):
                        problems.append(f"{which} tick labels {s1!r} and {s2!r} overlap")
    boxes = [(t, ax, t.get_window_extent(r)) for t, ax in texts if t is not sup]
    for i, (t1, a1, b1) in enumerate(boxes):  # text of one panel running into another panel's
        for t2, a2, b2 in boxes[i + 1 :]:
            if a1 is not a2 and b1.overlaps(b2):
                problems.append(f"text {t1.get_text()[:30]!r} overlaps {t2.get_text()[:30]!r}")
    for t, _ in texts:
        size = t.get_fontsize()
        if not style.MIN_FONT <= size <= style.MAX_FONT:
            problems.append(f"text {t.get_text()[:40]!r} at {size:g} pt (want {style.MIN_FONT:g}-{style.MAX_FONT:g})")
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if getattr(ax, "_colorbar", None) is not None:  # a colour bar: its one axis carries the label
            if not (ax.get_ylabel().strip() or ax.get_xlabel().strip()):
                problems.append("a colour bar without a label")
            continue
        data = _has_data(ax)
        has_note = any(t.get_visible() and t.get_text().strip() for t in ax.texts)
        if ax.axison and not data and not has_note:
            problems.append(f"panel {ax.get_title()!r} is empty and says nothing about why")
        if not data or (ax.images and not ax.get_xticks().size and not ax.get_yticks().size):
            continue  # an empty panel with a note, or an image tile
        if ax.axison:
            if not ax.get_xlabel().strip() and not _categorical(_drawn_ticklabels(ax, "x")):
                problems.append(f"panel {ax.get_title()!r}: x axis without a label")
            if not ax.get_ylabel().strip() and not _categorical(_drawn_ticklabels(ax, "y")):
                problems.append(f"panel {ax.get_title()!r}: y axis without a label")
        leg = ax.get_legend()
        if leg is not None:
            for h, t in zip(leg.legend_handles, leg.get_texts(), strict=False):
                mod = t.get_text().split(" ")[0].split(":")[0]
                if mod in style.MODALITY and h is not None:
                    c = _colour(h)
                    want = mcolors.to_rgb(style.MODALITY[mod])
                    if c is not None and not np.allclose(c, want, atol=0.02):
                        problems.append(f"legend entry {t.get_text()!r} is not the {mod} colour")
    width = fig.get_size_inches()[0]
    if width > style.PAGE_WIDTH + 1e-6:
        problems.append(f"figure {width:.2f} in wide (page: {style.PAGE_WIDTH} in)")
    if label is not None:
        titles = [sup.get_text() if sup is not None else ""] + [ax.get_title() for ax in fig.axes]
        if not any(label in t for t in titles):
            problems.append(f"no title names {label}")
    return problems


@pytest.mark.parametrize("name", FIGURES)
def test_figure_holds_up(name, inputs, tmp_path):
    fig, labelled = _build(name, inputs)
    try:
        problems = figure_problems(fig, LABEL if labelled else None)
        png = tmp_path / "f.png"
        save_figure(fig, png, tmp_path / "f.pdf", demo=True)
    finally:
        plt.close(fig)
    w, _ = Image.open(png).size
    if w > (style.PAGE_WIDTH + 0.25) * PNG_DPI:
        problems.append(f"saved PNG is {w / PNG_DPI:.2f} in wide")
    keep = os.environ.get("CLIPGEOM_FIGURE_DIR")
    if keep:
        dest = Path(keep) / f"{name.replace('/', '__')}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(png.read_bytes())
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the checks catch what they should
def test_checks_catch_an_overlapping_title_an_empty_panel_and_a_missing_label():
    fig, axes = plt.subplots(1, 2, figsize=(9, 2))
    axes[0].plot([0, 1], [0, 1])
    axes[0].set_title("a title right under the figure's")
    fig.suptitle("a figure title", y=0.9)
    found = "\n".join(figure_problems(fig, LABEL))
    plt.close(fig)
    assert "overlaps the figure title" in found
    assert "'' is empty" in found
    assert "x axis without a label" in found and "y axis without a label" in found
    assert "wide (page" in found and "no title names" in found


def test_empty_subset_says_no_pairs(inputs):
    from clipgeom.plots import loss as lp

    curves = {s: inputs["sweep_easy"].curves[("cosine", s)] for s in ("image", "text")}
    assert (np.asarray(curves["image"]["n_misclassified"]) == 0).all()
    fig = lp.plot_loss_curves(inputs["sweep_easy"].alphas, curves, label=LABEL)
    try:
        notes = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert any("misclassified: no pairs" in n for n in notes), notes
        labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert not any(lab.startswith("misclassified") for lab in labels)
    finally:
        plt.close(fig)
