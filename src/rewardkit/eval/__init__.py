"""Evaluators: small pure functions over scores, and report objects that render them. Names are
imported on first use (``rewardkit.util.lazy_exports``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardkit.util import lazy_exports

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "best_of_n": "rewardkit.eval.bon",
    "bon_curve": "rewardkit.eval.bon",
    "bon_kl": "rewardkit.eval.bon",
    "generate_candidates": "rewardkit.eval.generation",
    "label_preferences": "rewardkit.eval.bon",
    "MiniLMEmbedder": "rewardkit.eval.diversity",
    "cosine_diversity": "rewardkit.eval.diversity",
    "ead": "rewardkit.eval.diversity",
    "embedding_diversity": "rewardkit.eval.diversity",
    "mean_ead": "rewardkit.eval.diversity",
    "bootstrap_ci": "rewardkit.eval.metrics",
    "correctness": "rewardkit.accuracy",
    "expected_calibration_error": "rewardkit.eval.metrics",
    "fit_temperature": "rewardkit.eval.metrics",
    "mcnemar_test": "rewardkit.eval.metrics",
    "paired_bootstrap_test": "rewardkit.eval.metrics",
    "pairwise_accuracy": "rewardkit.accuracy",
    "reliability_curve": "rewardkit.eval.metrics",
    "selective_accuracy": "rewardkit.eval.metrics",
    "spearman_agreement": "rewardkit.eval.metrics",
    "top1_agreement": "rewardkit.eval.metrics",
    "EvalReport": "rewardkit.eval.evaluator",
    "evaluate": "rewardkit.eval.evaluator",
    "run_suite": "rewardkit.eval.suites",
    "run_bench": "rewardkit.eval.bench_report",
    "BenchReport": "rewardkit.eval.bench_report",
    "load_bench": "rewardkit.eval.bench_data",
    "run_card": "rewardkit.eval.card",
    "Card": "rewardkit.eval.card",
    "SuiteReport": "rewardkit.eval.suites",
    "load_suite": "rewardkit.eval.suite_data",
    "SuiteData": "rewardkit.eval.suite_data",
    "SuiteScores": "rewardkit.eval.rewardbench",
    "rewardbench_v1_scores": "rewardkit.eval.rewardbench",
    "rewardbench_v2_scores": "rewardkit.eval.rewardbench",
}

__all__ = [
    "BenchReport",
    "Card",
    "EvalReport",
    "MiniLMEmbedder",
    "SuiteData",
    "SuiteReport",
    "SuiteScores",
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
    "load_bench",
    "load_suite",
    "mcnemar_test",
    "mean_ead",
    "paired_bootstrap_test",
    "pairwise_accuracy",
    "reliability_curve",
    "rewardbench_v1_scores",
    "rewardbench_v2_scores",
    "run_bench",
    "run_card",
    "run_suite",
    "selective_accuracy",
    "spearman_agreement",
    "top1_agreement",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from rewardkit.accuracy import correctness, pairwise_accuracy
    from rewardkit.eval.bench_data import load_bench
    from rewardkit.eval.bench_report import BenchReport, run_bench
    from rewardkit.eval.bon import best_of_n, bon_curve, bon_kl, label_preferences
    from rewardkit.eval.card import Card, run_card
    from rewardkit.eval.diversity import MiniLMEmbedder, cosine_diversity, ead, embedding_diversity, mean_ead
    from rewardkit.eval.evaluator import EvalReport, evaluate
    from rewardkit.eval.generation import generate_candidates
    from rewardkit.eval.metrics import (
        bootstrap_ci,
        expected_calibration_error,
        fit_temperature,
        mcnemar_test,
        paired_bootstrap_test,
        reliability_curve,
        selective_accuracy,
        spearman_agreement,
        top1_agreement,
    )
    from rewardkit.eval.rewardbench import SuiteScores, rewardbench_v1_scores, rewardbench_v2_scores
    from rewardkit.eval.suite_data import SuiteData, load_suite
    from rewardkit.eval.suites import SuiteReport, run_suite
