"""save_figure and the figure builders after the rendering speed-up (no timings here).

save_figure measures each file's tight box without drawing and draws each file once, where
``savefig(bbox_inches="tight")`` drew every file twice; the histograms are one filled step
polygon per series instead of one rectangle per bin.  These tests check that the files are still
what ``bbox_inches="tight"`` gives (valid PNG/PDF, the same pixels and page size, nothing cut
off), that each file is drawn once, that figures are closed, and that the histograms keep their
limits and legends.
"""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from clipgeom import outputs  # noqa: E402
from clipgeom.outputs import PNG_DPI, save_figure  # noqa: E402
from clipgeom.plots import geometry as gp  # noqa: E402
from clipgeom.plots import loss as lp  # noqa: E402

WHITE = 250  # a pixel channel at or above this counts as background


def _labelled_figure(**kw):
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), **kw)
    for ax in axes:
        ax.plot([1e-3, 1.0], [0.0, 1.0])
        ax.set_xscale("log")
        ax.set_xlabel(r"a long x label with mathtext $\hat C = a\,\cos(m, v) + b$")
        ax.set_ylabel("a long y label\non two lines")
        ax.set_title("a title")
        ax.legend(["series"], loc="best")
    fig.suptitle("A suptitle")
    return fig


def _pdf_page_size(path) -> tuple[float, float]:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    box = re.search(rb"/MediaBox\s*\[\s*([-\d.\s]+)\]", data).group(1).split()
    x0, y0, x1, y1 = map(float, box)
    return x1 - x0, y1 - y0


def _reference_sizes(make, tmp_path):
    """PNG pixel size and PDF page size of the same figure saved the plain matplotlib way."""
    fig = make()
    fig.savefig(tmp_path / "ref.png", dpi=PNG_DPI, bbox_inches="tight")
    fig.savefig(tmp_path / "ref.pdf", bbox_inches="tight")
    plt.close(fig)
    return Image.open(tmp_path / "ref.png").size, _pdf_page_size(tmp_path / "ref.pdf")


def _ink_margins(png) -> tuple[int, int, int, int]:
    """Background pixels between the drawn content and the left, top, right, bottom edge."""
    a = np.asarray(Image.open(png).convert("RGB"))
    ink = (a < WHITE).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return cols[0], rows[0], a.shape[1] - 1 - cols[-1], a.shape[0] - 1 - rows[-1]


def _tight_layout_figure():
    fig = _labelled_figure()
    fig.tight_layout()
    return fig


def _wrapped_text_figure():
    """Long wrapped text that reaches the figure's edges: Agg's hinted text widths at 100 dpi (the
    figure's dpi) differ by a few % from those at 120 dpi or in the PDF, enough to cut it off if
    the tight box were measured once for both files."""
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(
        0.5,
        0.5,
        "conformity needs at least 2 rows per modality; too few in ['image'] "
        "({'image': 1, 'text': 5}) and a few more words to wrap",
        ha="center",
        va="center",
        wrap=True,
        fontsize=8,
    )
    return fig


@pytest.mark.parametrize("make", [_tight_layout_figure, _wrapped_text_figure])
def test_save_figure_is_bbox_tight(tmp_path, make):
    """The same files as ``savefig(bbox_inches="tight")``: identical PNG pixels, same PDF page."""
    ref = make()
    ref.savefig(tmp_path / "ref.png", dpi=PNG_DPI, bbox_inches="tight")
    ref.savefig(tmp_path / "ref.pdf", bbox_inches="tight")
    plt.close(ref)
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    save_figure(make(), png, pdf)

    img = Image.open(png)
    img.verify()
    img = Image.open(png)
    assert img.format == "PNG"
    assert img.info["dpi"] == pytest.approx((PNG_DPI, PNG_DPI), abs=0.1)
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(tmp_path / "ref.png")))
    assert _pdf_page_size(pdf) == pytest.approx(_pdf_page_size(tmp_path / "ref.pdf"), abs=0.01)
    # nothing cut off: the pad of savefig.pad_inches (0.1 in = 12 px) is background on every side
    pad = matplotlib.rcParams["savefig.pad_inches"] * PNG_DPI
    margins = _ink_margins(png)
    assert min(margins) >= pad - 4, margins
    if make is _tight_layout_figure:  # (an axis("off") Axes counts in the box, not in the ink)
        assert max(margins) <= pad + 6, margins


def test_constrained_layout_runs_once_and_is_kept(tmp_path):
    """A layout engine is run once and frozen for both files (within a few pixels of savefig's)."""

    def make():
        return _labelled_figure(layout="constrained")

    (ref_w, ref_h), (ref_pw, ref_ph) = _reference_sizes(make, tmp_path)
    fig = make()
    default_left = fig.axes[0].get_position().x0
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    assert fig.get_layout_engine() is None
    assert fig.axes[0].get_position().x0 != pytest.approx(default_left)  # the engine did run
    w, h = Image.open(tmp_path / "f.png").size
    assert abs(w - ref_w) <= 8 and abs(h - ref_h) <= 8, ((w, h), (ref_w, ref_h))
    pw, ph = _pdf_page_size(tmp_path / "f.pdf")
    assert abs(pw - ref_pw) <= 6 and abs(ph - ref_ph) <= 6, ((pw, ph), (ref_pw, ref_ph))
    pad = matplotlib.rcParams["savefig.pad_inches"] * PNG_DPI
    for margin in _ink_margins(tmp_path / "f.png"):
        assert pad - 6 <= margin <= pad + 8


def test_artist_outside_the_canvas_is_kept(tmp_path):
    """Like bbox_inches="tight", the box grows to artists placed outside the figure."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1])
    fig.text(1.15, 0.5, "outside on the right", ha="left")
    save_figure(fig, tmp_path / "f.png")
    w, _ = Image.open(tmp_path / "f.png").size
    assert w > 3 * PNG_DPI * 1.3
    assert _ink_margins(tmp_path / "f.png")[2] >= 6  # the text's end is not clipped


def test_each_file_is_drawn_once(tmp_path, monkeypatch):
    """One draw per file; savefig(bbox_inches="tight") or a leftover layout engine draws twice."""
    draws = []
    orig = Figure.draw

    def counting_draw(self, renderer):
        draws.append(type(renderer).__name__)
        return orig(self, renderer)

    monkeypatch.setattr(Figure, "draw", counting_draw)
    fig = _labelled_figure()
    fig.tight_layout()
    assert fig.get_layout_engine() is not None  # the placeholder that tight_layout leaves behind
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf", demo=True)
    assert len(draws) == 2, draws
    assert fig.get_layout_engine() is None


def test_demo_note_and_figures_closed(tmp_path):
    before = set(plt.get_fignums())
    fig = _labelled_figure()
    fig.tight_layout()
    assert fig.number in plt.get_fignums()
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf", demo=True)
    assert fig.number not in plt.get_fignums()
    assert set(plt.get_fignums()) == before
    assert any(t.get_text().startswith("SYNTHETIC:") for t in fig.texts)
    # the demo note at the bottom edge is inside the image: red ink in the bottom rows
    a = np.asarray(Image.open(tmp_path / "f.png").convert("RGB")).astype(int)
    bottom = a[-40:]
    assert ((bottom[..., 0] > 120) & (bottom[..., 1] < 80) & (bottom[..., 2] < 80)).any()


def test_bare_figure_without_pyplot(tmp_path):
    """A Figure made without pyplot (no canvas able to measure text) saves the same way."""
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([0, 1])
    ax.set_xlabel("x label")
    fig.tight_layout()
    save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    w, h = Image.open(tmp_path / "f.png").size
    assert 2.4 * PNG_DPI <= w <= 3.2 * PNG_DPI and 1.6 * PNG_DPI <= h <= 2.2 * PNG_DPI
    assert _pdf_page_size(tmp_path / "f.pdf")[0] == pytest.approx(w / PNG_DPI * 72, abs=8)


def test_png_is_lossless_at_the_faster_level(tmp_path):
    """The PNG compression level changes the file size, never the pixels."""
    fig = _labelled_figure()
    fig.tight_layout()
    save_figure(fig, tmp_path / "fast.png")
    fast = np.asarray(Image.open(tmp_path / "fast.png"))
    Image.fromarray(fast).save(tmp_path / "default.png")  # PIL's default level
    assert np.array_equal(np.asarray(Image.open(tmp_path / "default.png")), fast)
    assert outputs.PNG_COMPRESS_LEVEL in range(0, 10)


# ---------------------------------------------------------------------------
# histograms: one filled step polygon per series, same limits and legend as bars
# ---------------------------------------------------------------------------
def _per_mod(seed=0, d=200):
    rng = np.random.default_rng(seed)
    return {
        mod: {"var": rng.lognormal(-2 + k, 1.0, d), "odd": rng.gamma(2.0 + k, 0.5, d)}
        for k, mod in enumerate(("image", "text"))
    }


@pytest.mark.parametrize("which", ["var", "odd"])
def test_hist_is_one_patch_per_series_with_bar_limits(which):
    per_mod = _per_mod()
    fig = (gp.plot_variance_hist if which == "var" else gp.plot_odd_hist)(per_mod, bins=60, label="(t)")
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # was 2 x 60 rectangles
    # the same histogram drawn as bars, the way it was drawn before
    ref, rax = plt.subplots(figsize=(6, 3.6))
    allv = np.concatenate([per_mod[m][which] for m in ("image", "text")])
    edges = (
        np.geomspace(allv.min(), allv.max() * 1.0001, 61) if which == "var" else np.linspace(allv.min(), allv.max(), 61)
    )
    heights = []
    for mod in ("image", "text"):
        n, _, _ = rax.hist(per_mod[mod][which], bins=edges, alpha=0.5, label=mod)
        heights.append(n.max())
    if which == "var":
        rax.set_xscale("log")
    else:
        rax.axvline(1.0)
    assert ax.get_ylim() == pytest.approx(rax.get_ylim())
    assert ax.get_xlim() == pytest.approx(rax.get_xlim())
    assert ax.get_ylim()[0] == 0  # the bars' sticky baseline is kept
    for patch, h in zip(ax.patches, heights, strict=False):
        assert patch.get_path().vertices[:, 1].max() == pytest.approx(h)
        assert patch.get_alpha() == 0.5 and patch.get_fill()
    handles, labels = ax.get_legend_handles_labels()
    assert labels[:2] == ["image", "text"]
    if which == "odd":  # the ODD = 1 line has its own legend entry
        assert labels[2].startswith("ODD = 1") and len(labels) == 3
    plt.close(ref)
    plt.close(fig)


def test_blur_hist_labels_and_counts():
    from clipgeom.blur import blur_simulation

    res = blur_simulation(n=200, dim=16, centre=[3.0, 1.0], seed=0)
    fig = lp.plot_blur(res, bins=20)
    for ax, s in zip(fig.axes, res.values(), strict=False):
        assert len(ax.patches) == 2
        # counts, not densities: the tallest step is the fullest bin
        edges = np.linspace(min(s.cos_mean.min(), s.cos_far.min()), max(s.cos_mean.max(), s.cos_far.max()), 21)
        top = max(np.histogram(s.cos_mean, edges)[0].max(), np.histogram(s.cos_far, edges)[0].max())
        assert max(p.get_path().vertices[:, 1].max() for p in ax.patches) == top
        assert [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()] == ["cos(m, v)", "cos(v_far, v)"]
    plt.close(fig)
