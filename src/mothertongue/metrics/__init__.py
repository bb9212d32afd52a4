"""Metrics for the evaluate stage: language fidelity, reference scores, perplexity, behaviour, judge.

    python -m pytest -q tests/test_metrics.py tests/test_fidelity.py

Each module imports its heavy library (lingua, sacreBLEU, torch) only inside its functions.
"""
