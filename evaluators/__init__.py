"""The CLaMP-style evaluator: music encoder, features, centroids, scores and guard metrics."""
