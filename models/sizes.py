"""NotaGen's published decoder sizes (its README and configs) and our CPU-sized ``tiny``: the one table
the config, the model and the command line read (no torch here, so configs load fast)."""

SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(patch_num_layers=3, char_num_layers=2, hidden_size=192, patch_length=512),
    "small": dict(patch_num_layers=12, char_num_layers=3, hidden_size=768, patch_length=2048),
    "medium": dict(patch_num_layers=16, char_num_layers=3, hidden_size=1024, patch_length=2048),
    "large": dict(patch_num_layers=20, char_num_layers=6, hidden_size=1280, patch_length=1024),
    "x": dict(patch_num_layers=20, char_num_layers=6, hidden_size=1280, patch_length=1024),
}
