"""The CLaMP-DPO campaign: its config, prompts, sample ids, stage records and round metrics (no Ray here)."""
