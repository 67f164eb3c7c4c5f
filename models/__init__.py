"""NotaGen's two-level decoder, its patchilizer and its sampler."""
