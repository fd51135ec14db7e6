"""Numbers the papers report, for comparison with this workflow's summary.json.

``PAPER_VALUES`` maps a dotted summary key — ``<stage>.<key>[.<subkey>]``, exactly the path of the value
in ``results/{dataset}/{model}/summary.json`` (whose top level nests each stage's metrics.json ``summary``
block under the stage name) — to the value the paper reports for MS-COCO val2017 × CLIP ViT-B/32
(open_clip ``ViT-B-32`` / ``openai``).  Only numbers the paper states are listed; each stage's section is
maintained by the engineer of that stage.

Feature indices are 0-based (numpy column numbers); the paper's indices are taken as 0-based as well.
"""

PAPER_VALUES = {
    # --- thin_shell (Levi & Gilboa §3, Eqs. 1-4): centred image embeddings x~ = v - m
    "thin_shell.image.mu_norm": 7.5873,      # E||x~||
    "thin_shell.image.var_y": 0.1914,        # var(||x~||)
    "thin_shell.image.rms_norm": 7.6007,     # sqrt(E||x~||^2) = sqrt(tr C)
    "thin_shell.image.rel_error": 0.0018,    # 0.18% between mu_norm and sqrt(E||x~||^2)
    # --- separability (Levi & Gilboa §4, Property 1, Eq. 5, Figs 2-3)
    "separability.svm_top2_accuracy": 1.0,   # linear SVM on features 93 and 134 alone
    "separability.top2_features": [93, 134],
    "separability.n_tag_features": 9,        # features acting as modality "tags" (criterion not stated)
    "separability.kl_top_feature": 301,      # KL between the modalities' histograms of feature 93 (estimator not stated)
    # --- covariance (Levi & Gilboa §4, Properties 3-5): ||m|| / ||sigma|| per modality
    "covariance.image.mean_to_std_ratio": 0.94,
    "covariance.text.mean_to_std_ratio": 1.03,
    # --- conformity (Levi & Gilboa §6, Eqs. 10-11, Fig. 9). The paper's a, b (a > 1) cannot come from the
    # forward least-squares fit of Eq. 11: from the O(N d) identity, C = N/(N-1) ||u|| cos(u, v) - 1/(N-1)
    # (u the mean unit vector), so the forward slope is about ||u|| <= 1. They match the reverse regression
    # cos(m, v) = a' C + b' instead, so the table compares them with summary's inverse_a / inverse_b.
    "conformity.image.pearson": 0.9998,
    "conformity.image.inverse_a": 1.461,
    "conformity.image.inverse_b": 0.002,     # rendered text 0.002; the formula source says -0.002
    "conformity.text.pearson": 0.9998,
    "conformity.text.inverse_a": 1.411,
    "conformity.text.inverse_b": -0.008,
    # --- kl_matching (Figs. 10-11): KL between image and text conformity distributions vs the image shift
    "kl_matching.kl_at_zero": 0.14,
    "kl_matching.argmin_alpha": 0.0,
}
