"""The English regression gate: did tuning for the target language cost the model its English?

    evaluate: {english_regression_max: 0.05}      # in a recipe; the scorecard then carries the verdict

Two measures, base against tuned, each where the run has it:
- bits per byte on the original English answers of the held-out conversations (the translate
  stage keeps them): the relative rise, (tuned - base) / base. Bits per byte rather than
  perplexity, because the vocabulary may have changed between base and tuned (vocab stage).
- every lm-eval English task (`evaluate.benchmarks`): the absolute drop in its main score.

A loss over `english_regression_max` on any measure flags the run: the scorecard shows it in red
and the evaluate command prints it.
"""

from __future__ import annotations


def english_regression(models: dict, max_loss: float) -> dict:
    """{"max", "checks": [{measure, base, tuned, loss, over}], "flagged"} from the scorecard's
    `models` section (base and tuned)."""
    base, tuned = models["base"], models["tuned"]
    checks = []
    b, t = base.get("english", {}).get("bits_per_byte"), tuned.get("english", {}).get("bits_per_byte")
    if b and t is not None:
        checks.append({"measure": "English bits per byte (relative rise)", "base": b, "tuned": t,
                       "loss": round((t - b) / b, 4)})
    for key, value in tuned.get("lm-eval en", {}).items():
        before = base.get("lm-eval en", {}).get(key)
        if key != "n" and isinstance(value, (int, float)) and isinstance(before, (int, float)):
            checks.append({"measure": f"lm-eval {key} (absolute drop)", "base": before, "tuned": value,
                           "loss": round(before - value, 4)})
    for c in checks:
        c["over"] = c["loss"] > max_loss
    return {"max": max_loss, "checks": checks, "flagged": any(c["over"] for c in checks)}


def verdict_line(gate: dict) -> str:
    """One line for the terminal and the Markdown scorecard."""
    if not gate["checks"]:
        return ("English regression: nothing to measure (no original English answers held out, "
                "no lm-eval English tasks)")
    worst = max(gate["checks"], key=lambda c: c["loss"])
    if gate["flagged"]:
        over = [c for c in gate["checks"] if c["over"]]
        parts = "; ".join(f"{c['measure']}: {c['base']:.4g} -> {c['tuned']:.4g}" for c in over)
        return f"ENGLISH REGRESSION over the allowed {gate['max']:.4g}: {parts}"
    return (f"English kept: worst loss {worst['loss']:.4g} ({worst['measure']}) within the allowed "
            f"{gate['max']:.4g}")
