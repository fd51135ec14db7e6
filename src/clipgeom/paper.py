"""The papers' claims, one row each, and how a run's summary.json is judged against them.

Every claim of Levi & Gilboa (and the one EuCLIP claim this workflow measures) is a :class:`Claim`: the
summary key it is judged on (``<stage>.<key>[.<subkey>]``, the path in ``results/{dataset}/{model}/summary.json``),
the paper's number or the qualitative test, the estimator this workflow uses, and — for a number — the
tolerance within which the run counts as agreeing with the paper. :func:`evaluate_claims` turns a summary
into the rows of ``paper_vs_run.csv``; each row says whether it is *comparable* with the paper and why.

A number is comparable only on the paper's setup (MS-COCO val2017 embedded by CLIP ViT-B/32 with OpenAI's
weights), only where the paper's estimator is stated or could be inferred, and — for norms and offsets —
only on raw (unnormalised) embeddings. A qualitative claim (``kind = "qualitative"``) is evaluated on every
model and dataset to ``holds`` / ``fails`` / ``not applicable``; it is comparable with the paper's
observation under the same conditions.

Feature indices are 0-based (numpy column numbers); the paper's indices are taken as 0-based as well.
Every transcribed number is checked against the paper's text in ``tests/test_paper_claims.py`` (a quote per
number); where the rendered text drops a minus sign, the LaTeX source in the text is the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PAPER_SETUP = "MS-COCO val2017 × CLIP ViT-B/32 (open_clip ViT-B-32 / openai)"

HOLDS, FAILS, NOT_APPLICABLE = "holds", "fails", "not applicable"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, judged on one summary key."""

    id: str
    source: str  # where in the paper: section, equation, figure
    statement: str
    key: str  # the summary key judged
    estimator: str  # how this workflow computes the key
    paper: object = None  # the paper's number (None: a qualitative claim)
    tol: float | None = None  # tolerance around ``paper``
    rel: bool = False  # tolerance relative to |paper| (else absolute)
    test: Callable[[Mapping], bool | None] | None = None  # qualitative: flat summary -> holds?
    test_text: str = ""  # the qualitative test in words
    baseline_key: str | None = None  # the same statistic without the claim (a null / control)
    needs_raw: bool = False  # only meaningful on unnormalised embeddings
    never_comparable: str | None = None  # why no run can be compared with the paper's number
    paper_only: bool = True  # comparable only on the paper's setup

    @property
    def kind(self) -> str:
        return "number" if self.test is None else "qualitative"

    @property
    def tolerance_text(self) -> str:
        if self.tol is None:
            return "exact" if self.paper is not None and self.test is None else ""
        return f"±{self.tol:g}" + (" relative" if self.rel else "")


def _num(flat: Mapping, key: str) -> float | None:
    v = flat.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _at_least(key: str, x: float):
    return lambda flat: None if _num(flat, key) is None else _num(flat, key) >= x


def _at_most(key: str, x: float):
    return lambda flat: None if _num(flat, key) is None else _num(flat, key) <= x


def _abs_at_most(key: str, x: float):
    return lambda flat: None if _num(flat, key) is None else abs(_num(flat, key)) <= x


def _above_null(ratio_key: str, p_key: str, p_max: float = 0.05):
    def test(flat):
        r, p = _num(flat, ratio_key), _num(flat, p_key)
        return None if r is None or p is None else (r > 1.0 and p <= p_max)

    return test


def _frequency_test(source: str, p_max: float = 0.05):
    """Prediction 1 on the concept_frequency stage's keys, for one frequency source (``training`` or ``proxy``).

    Holds when, in both modalities, the sample-level Spearman ρ of frequency with conformity (Eq. 10) is > 0,
    its bootstrap CI lies above 0 and the permutation p (frequencies permuted across concepts) is <= p_max;
    fails when a modality breaks one of these; None (not applicable) when the source is another, or a
    modality's ρ, CI or p was not computed.
    """

    def test(flat):
        src = flat.get("concept_frequency.source")
        if not isinstance(src, str) or not (src == source if source == "training" else src.startswith(source)):
            return None
        ok = True
        for mod in ("image", "text"):
            rho = _num(flat, f"concept_frequency.{mod}.rho_conformity")
            p = _num(flat, f"concept_frequency.{mod}.p_permutation")
            ci = flat.get(f"concept_frequency.{mod}.rho_conformity_ci")
            lo = ci[0] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
            if rho is None or p is None or not isinstance(lo, (int, float)) or not math.isfinite(lo):
                return None
            ok = ok and rho > 0 and lo > 0 and p <= p_max
        return ok

    return test


_PRED1 = (
    "Spearman ρ of frequency with exact conformity (Eq. 10) over every row of each modality, its percentile "
    "bootstrap CI (rows resampled) and a one-sided permutation p (frequencies permuted across concepts)"
)
_PRED1_TEST = "both modalities: ρ > 0, bootstrap CI above 0 and permutation p <= 0.05"
_PRED1_UNMEASURED = (
    "the paper states Prediction 1 without measuring it (a pretrained CLIP's training data cannot be counted): "
    "no observation of the paper's to set a run beside; the status is this run's own test"
)
_SVM = "5-fold CV accuracy of a linear SVM (standardised features)"
_SHELL = "moments of ‖x~‖ over the modality's rows, x~ = v - m, with thin_shell.ddof (default 1, the paper's)"
_REVERSE = (
    "least squares of the reverse regression cos(m, v) = a·C + b (the paper's a > 1 cannot be the forward "
    "fit of Eq. 11, whose slope is about ‖ū‖ <= 1)"
)


def _claims() -> tuple[Claim, ...]:
    out = []
    # --- §3 thin shell (Eqs. 1-4), images, centred
    for name, value, tol, rel in (
        ("mu_norm", 7.5873, 0.02, True),
        ("var_y", 0.1914, 0.15, True),
        ("rms_norm", 7.6007, 0.02, True),
        ("rel_error", 0.0018, 0.001, False),
    ):
        out.append(
            Claim(
                f"thin_shell.image.{name}",
                "§3, Eqs. 1-4",
                f"images, centred: {name} = {value}",
                f"thin_shell.image.{name}",
                _SHELL,
                paper=value,
                tol=tol,
                rel=rel,
                needs_raw=True,
            )
        )
    for mod in ("image", "text"):
        out.append(
            Claim(
                f"thin_shell.{mod}.is_thin",
                "§3, Eq. 3",
                f"{mod}: the centred embeddings lie on a thin shell (E‖x~‖ ≈ sqrt(E‖x~‖²))",
                f"thin_shell.{mod}.rel_error",
                _SHELL,
                test=_at_most(f"thin_shell.{mod}.rel_error", 0.01),
                test_text="rel_error <= 0.01",
                needs_raw=True,
            )
        )
    # --- §4 separability (Property 1, Eq. 5, Figs. 2-3)
    out += [
        Claim(
            "separability.svm_two_features",
            "§4, Property 1, Fig. 2",
            "a linear SVM on two features separates image from text with 100% accuracy",
            "separability.svm_top2_accuracy",
            _SVM + " on the two features of largest Sep (Eq. 5)",
            test=_at_least("separability.svm_top2_accuracy", 0.99),
            test_text="accuracy >= 0.99",
            baseline_key="separability.svm_random2_accuracy",
            paper_only=False,
        ),
        Claim(
            "separability.svm_top2_accuracy",
            "§4, Fig. 2",
            "SVM accuracy on features 93 and 134: 100%",
            "separability.svm_top2_accuracy",
            _SVM + " on the two features of largest Sep",
            paper=1.0,
            tol=0.005,
            baseline_key="separability.svm_random2_accuracy",
        ),
        Claim(
            "separability.paper_features_svm",
            "§4, Fig. 2",
            "SVM accuracy on the paper's features 93 and 134",
            "separability.paper_features.svm_accuracy",
            _SVM + " on separability.paper_features[:2]",
            paper=1.0,
            tol=0.005,
            baseline_key="separability.svm_random2_accuracy",
        ),
        Claim(
            "separability.top2_features",
            "§4, Fig. 2",
            "the two tag features are 93 and 134",
            "separability.top2_features",
            "the two features of largest Sep (Eq. 5)",
            paper=[93, 134],
        ),
        Claim(
            "separability.n_tag_features",
            "§4",
            "9 features act as modality tags",
            "separability.n_tag_features",
            "count of features with Sep > separability.tag_threshold",
            paper=9,
            never_comparable="the paper does not state its criterion; "
            "separability.tag_threshold_for_paper_count gives the thresholds that reproduce 9",
        ),
        Claim(
            "separability.kl_top_feature",
            "§4, Fig. 2",
            "KL between the modalities' distributions of feature 93 ≈ 301",
            "separability.kl_top_feature",
            "Gaussian closed-form KL, image ‖ text, of the feature of largest Sep "
            "(the paper's estimator is not stated; the closed form is the inferred one)",
            paper=301.0,
            tol=0.25,
            rel=True,
        ),
        # --- §4 covariance and offset (Properties 3-5, Eq. 6, Fig. 5)
        Claim(
            "covariance.image.mean_to_std_ratio",
            "§4, Property 4",
            "images: ‖m_i‖ / ‖σ_i‖ = 0.94",
            "covariance.image.mean_to_std_ratio",
            "norm of the raw mean over norm of the per-feature std vector",
            paper=0.94,
            tol=0.05,
            rel=True,
            needs_raw=True,
        ),
        Claim(
            "covariance.text.mean_to_std_ratio",
            "§4, Property 4",
            "text: ‖m_t‖ / ‖σ_t‖ = 1.03",
            "covariance.text.mean_to_std_ratio",
            "norm of the raw mean over norm of the per-feature std vector",
            paper=1.03,
            tol=0.05,
            rel=True,
            needs_raw=True,
        ),
    ]
    for mod in ("image", "text"):
        out.append(
            Claim(
                f"covariance.{mod}.tilted",
                "§4, Eq. 6, Fig. 5",
                f"{mod}: off-diagonal dominance is common → a tilted ellipsoid (strong correlations)",
                f"covariance.{mod}.odd_median_ratio_to_null",
                "median ODD (Eq. 6) over the median under a column-permutation null and a diagonal "
                "Gaussian with the same variances and N; p from the permutation null",
                test=_above_null(f"covariance.{mod}.odd_median_ratio_to_null", f"covariance.{mod}.odd_p_value"),
                test_text="median ODD above both nulls (ratio > 1) with permutation p <= 0.05",
                baseline_key=f"covariance.{mod}.odd_median_null_permutation",
                paper_only=False,
            )
        )
    # --- §5 loss (Eqs. 7-9, Fig. 6, Property 6), image shift, cosine logits
    sw = "alpha_sweep.image_shift"
    out += [
        Claim(
            "alpha_sweep.total_lowest_near_zero",
            "§5, Fig. 6, Property 6",
            "the total loss is lowest near α = 0 (CLIP as trained)",
            f"{sw}.argmin_alpha.all",
            "argmin over the α grid of Eq. 7 on the whole set as one batch (image shift, Eq. 9)",
            test=_abs_at_most(f"{sw}.argmin_alpha.all", 0.1),
            test_text="abs(argmin α) <= 0.1",
            paper_only=False,
        ),
        Claim(
            "alpha_sweep.correct_decreases",
            "§5, Fig. 6",
            "the loss of correctly classified pairs decreases monotonically as α → 1",
            f"{sw}.trend_0_1.correct",
            "Spearman ρ of the correct pairs' loss with α over α ∈ [0, 1]",
            test=_at_most(f"{sw}.trend_0_1.correct", -0.9),
            test_text="ρ <= -0.9",
            paper_only=False,
        ),
        Claim(
            "alpha_sweep.misclassified_increases",
            "§5, Fig. 6",
            "the loss of misclassified pairs increases as α → 1",
            f"{sw}.trend_0_1.misclassified",
            "Spearman ρ of the misclassified pairs' loss with α over α ∈ [0, 1]",
            test=_at_least(f"{sw}.trend_0_1.misclassified", 0.9),
            test_text="ρ >= 0.9",
            paper_only=False,
        ),
    ]
    # --- §6 conformity (Eqs. 10-11, Fig. 9) and KL matching (Figs. 10-11)
    for mod, a, b in (("image", 1.461, -0.002), ("text", 1.411, -0.008)):
        out += [
            Claim(
                f"conformity.{mod}.pearson",
                "§6, Eq. 11, Fig. 9",
                f"{mod}: Pearson(C, Ĉ) = 0.9998",
                f"conformity.{mod}.pearson",
                "Pearson r of exact conformity (Eq. 10) with cos(m, v); on unit rows "
                "r = 1 exactly when m ∥ ū (see conformity.*.angle_mean_to_unit_mean_deg)",
                paper=0.9998,
                tol=0.001,
            ),
            Claim(
                f"conformity.{mod}.inverse_a",
                "§6, Eq. 11",
                f"{mod}: a = {a}",
                f"conformity.{mod}.inverse_a",
                _REVERSE,
                paper=a,
                tol=0.05,
                rel=True,
            ),
            Claim(
                f"conformity.{mod}.inverse_b",
                "§6, Eq. 11",
                f"{mod}: b = {b}",
                f"conformity.{mod}.inverse_b",
                _REVERSE,
                paper=b,
                tol=0.01,
            ),
            Claim(
                f"conformity.{mod}.estimable",
                "§6, Eq. 11",
                f"{mod}: conformity is estimated almost perfectly from the cosine to the mean",
                f"conformity.{mod}.pearson",
                "Pearson r of C (Eq. 10) with cos(m, v)",
                test=_at_least(f"conformity.{mod}.pearson", 0.99),
                test_text="r >= 0.99",
                paper_only=False,
            ),
        ]
    out += [
        Claim(
            "kl_matching.kl_at_zero",
            "§6, Figs. 10-11",
            "KL between image and text conformity at α = 0 ≈ 0.14",
            "kl_matching.kl_at_zero",
            "histogram KL (shared bins, pseudocount) of image vs text conformity; the paper's binning is not stated",
            paper=0.14,
            tol=0.07,
        ),
        Claim(
            "kl_matching.lowest_near_zero",
            "§6, Fig. 11",
            "the conformity distributions match best near α = 0",
            "kl_matching.argmin_alpha",
            "argmin over the α grid of the KL between shifted-image and text conformity",
            test=_abs_at_most("kl_matching.argmin_alpha", 0.1),
            test_text="abs(argmin α) <= 0.1",
            paper_only=False,
        ),
        Claim(
            "prediction_1",
            "§6, Prediction 1",
            "common themes are embedded closer to the mean vector",
            "concept_frequency.source",
            _PRED1 + " (the concept's frequency in the model's training set, stored with the embeddings)",
            test=_frequency_test("training"),
            test_text=_PRED1_TEST + "; not applicable unless concept_frequency.source is 'training'",
            never_comparable=_PRED1_UNMEASURED,
            paper_only=False,
        ),
        Claim(
            "prediction_1_proxy",
            "§6, Prediction 1 (a proxy)",
            "PROXY, not Prediction 1 itself: images and captions whose words are frequent in a caption corpus "
            "are embedded closer to the mean vector",
            "concept_frequency.source",
            _PRED1 + " (a word-frequency proxy: frequency in a caption corpus, not in the model's training data)",
            test=_frequency_test("proxy"),
            test_text=_PRED1_TEST + "; not applicable unless concept_frequency.source starts with 'proxy'",
            never_comparable=_PRED1_UNMEASURED + "; a word-frequency proxy is not the training frequency",
            paper_only=False,
        ),
    ]
    # --- EuCLIP Fig. 2: the cone effect around [ROOT]
    for mod in ("image", "text"):
        out.append(
            Claim(
                f"origin_distance.{mod}.cone",
                "EuCLIP, Fig. 2",
                f"{mod}: most CLIP embeddings lie within 0.5 of [ROOT] (scaled cosine distance)",
                f"origin_distance.{mod}.frac_near_root",
                "fraction of rows with (1 − cos(v, ROOT))/2 <= origin_distance.near_root_threshold",
                test=_at_least(f"origin_distance.{mod}.frac_near_root", 0.5),
                test_text="fraction >= 0.5",
                never_comparable="EuCLIP's CLIP models are its authors' own, not ViT-B/32/openai",
            )
        )
    return tuple(out)


CLAIMS: tuple[Claim, ...] = _claims()

# The papers' numbers by summary key (the headline figure draws them beside the paper's setup).
PAPER_VALUES = {c.key: c.paper for c in CLAIMS if c.kind == "number" and c.never_comparable is None}


def within_tolerance(run, paper, tol: float | None, rel: bool) -> bool | None:
    """|run − paper| <= tol (times |paper| when ``rel``); lists compare exactly; None when run is missing."""
    if run is None:
        return None
    if isinstance(paper, (list, tuple)):
        return list(run) == list(paper) if isinstance(run, (list, tuple)) else False
    if not isinstance(run, (int, float)) or isinstance(run, bool) or not math.isfinite(run):
        return None
    if tol is None:
        return run == paper
    return abs(run - paper) <= tol * (abs(paper) if rel else 1.0)


def comparability(claim: Claim, run, *, paper_setup: bool, normalized: bool | None, setup: str) -> tuple[bool, str]:
    """(comparable, why) for one claim on one run."""
    if claim.never_comparable:
        return False, claim.never_comparable
    if run is None:
        return False, "not computed by this run"
    if claim.needs_raw and normalized:
        return False, "the rows are L2-normalised: raw norms and offsets are lost"
    if claim.paper_only and not paper_setup:
        return False, f"{setup} is not the paper's setup ({PAPER_SETUP})"
    if not paper_setup:
        return False, f"qualitative claim evaluated on {setup}; the paper observed it on {PAPER_SETUP}"
    if claim.needs_raw and normalized is None:
        return True, "the paper's setup; the embeddings file does not say whether rows were normalised"
    return True, "the paper's setup and estimator"


def evaluate_claims(flat: Mapping, *, paper_setup: bool, normalized: bool | None, setup: str) -> list[dict]:
    """One row per claim: the paper's value, the run's, the tolerance, status and comparability.

    ``flat`` is the flattened summary (dotted keys). ``status``: for a qualitative claim holds / fails /
    not applicable (its key was not computed); for a number ``within tolerance`` / ``outside tolerance``
    when comparable, else ``not comparable``.
    """
    rows = []
    for c in CLAIMS:
        run = flat.get(c.key)
        comparable, why = comparability(c, run, paper_setup=paper_setup, normalized=normalized, setup=setup)
        if c.kind == "qualitative":
            # a claim about raw embeddings says nothing about L2-normalised rows: not applicable there
            ok = None if (c.needs_raw and normalized) else c.test(flat)
            status = NOT_APPLICABLE if ok is None else (HOLDS if ok else FAILS)
            within = None
        else:
            within = within_tolerance(run, c.paper, c.tol, c.rel) if comparable else None
            status = "not comparable" if not comparable else "within tolerance" if within else "outside tolerance"
        rows.append(
            {
                "claim": c.id,
                "source": c.source,
                "statement": c.statement,
                "kind": c.kind,
                "key": c.key,
                "paper": c.paper,
                "run": run,
                "tolerance": c.tolerance_text or c.test_text,
                "within_tolerance": within,
                "status": status,
                "comparable": comparable,
                "why": why,
                "estimator": c.estimator,
                "baseline_key": c.baseline_key,
                "baseline": flat.get(c.baseline_key) if c.baseline_key else None,
            }
        )
    return rows


COLUMNS = (
    "claim",
    "source",
    "statement",
    "kind",
    "key",
    "paper",
    "run",
    "tolerance",
    "within_tolerance",
    "status",
    "comparable",
    "why",
    "estimator",
    "baseline_key",
    "baseline",
)
