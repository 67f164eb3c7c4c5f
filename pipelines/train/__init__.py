"""Supervised training of the NotaGen decoder (pre-training and fine-tuning on a corpus)."""
