"""The baselines' own small grids. They run as Ray tasks beside the QLoRA search, so they never
spend its Optuna budget; every grid point is one record in the leaderboard.

tfidf = tfidf-logreg (seconds, no neural model); fast = tfidf-logreg + embed-logreg; all = every
family below. A run profile picks the default (tune/profiles.py).
"""

GRIDS = {
    # TF-IDF word 1-2 grams + char 2-5 grams, logistic regression: needs no neural model.
    # C is the inverse regularisation; the text features are many and sparse, so C >= 1.
    "tfidf-logreg": [{"C": 4.0}, {"C": 16.0}],
    # Frozen embeddings (standardised) + logistic regression: the study's 91.49 % F1 baseline.
    "embed-logreg": [{"C": 0.1}, {"C": 1.0}],
    # RBF-SVM (the study: 91.27 %); gamma 'scale' = 1 / (features * variance).
    "embed-svm": [{"C": 1.0, "gamma": "scale"}, {"C": 10.0, "gamma": "scale"}],
    # The study's 256-128 MLP with dropout 0.5 and Adam 1e-3 (92.16 %), and a smaller variant.
    "embed-mlp": [{"hidden": [256, 128], "dropout": 0.5, "learning_rate": 1e-3, "epochs": 30},
                  {"hidden": [128], "dropout": 0.3, "learning_rate": 1e-3, "epochs": 30}],
}

CHOICES = {
    "none": [],
    "tfidf": ["tfidf-logreg"],
    "fast": ["tfidf-logreg", "embed-logreg"],
    "all": list(GRIDS),
}
