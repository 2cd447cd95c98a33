"""Training, evaluation, robustness, consistency and the ablation ladder."""
