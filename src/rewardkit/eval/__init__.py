"""Evaluators: small pure functions over scores, and one report object that renders them."""

from rewardkit.eval.bon import best_of_n, bon_curve, bon_kl, generate_candidates, label_preferences
from rewardkit.eval.diversity import MiniLMEmbedder, cosine_diversity, ead, embedding_diversity, mean_ead
from rewardkit.eval.metrics import (
    bootstrap_ci,
    correctness,
    expected_calibration_error,
    fit_temperature,
    mcnemar_test,
    paired_bootstrap_test,
    pairwise_accuracy,
    reliability_curve,
    selective_accuracy,
    spearman_agreement,
    top1_agreement,
)
from rewardkit.eval.shift import EvalReport, evaluate

__all__ = [
    "EvalReport",
    "MiniLMEmbedder",
    "best_of_n",
    "bon_curve",
    "bon_kl",
    "bootstrap_ci",
    "correctness",
    "cosine_diversity",
    "ead",
    "embedding_diversity",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "generate_candidates",
    "label_preferences",
    "mcnemar_test",
    "mean_ead",
    "paired_bootstrap_test",
    "pairwise_accuracy",
    "reliability_curve",
    "selective_accuracy",
    "spearman_agreement",
    "top1_agreement",
]
