"""The ``model:`` section of a project config: which NotaGen size to build, or which weights to start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from base.typed_config import check, option
from models.sizes import SIZES

if TYPE_CHECKING:
    from models.notagen import NotaGenConfig, NotaGenForCausalLM


@dataclass
class ModelConfig:
    """NotaGen's sizes by name (tiny, small, medium, large, x), any dimension overridable."""

    size: str = option("tiny", help="Named size: tiny (CPU, minutes), or NotaGen's small, medium, large, x.")
    patch_length: Optional[int] = option(
        None, help="Patches of context (positions of the patch decoder); default from the size."
    )
    patch_num_layers: Optional[int] = option(None, help="Patch-level GPT-2 layers; default from the size.")
    char_num_layers: Optional[int] = option(None, help="Char-level GPT-2 layers; default from the size.")
    hidden_size: Optional[int] = option(
        None, help="Hidden size of both levels (heads = hidden/64); default from the size."
    )
    dropout: float = option(0.1, help="Dropout of both GPT-2s while training (NotaGen: 0.1).")
    init_from: Optional[str] = option(
        None,
        help="A saved model folder (save_pretrained, or `model "
        "import-notagen` output) to start from instead of random "
        "weights; its sizes win over the fields above.",
    )

    def __post_init__(self) -> None:
        check(self.size in SIZES, "size", f"must be one of {', '.join(SIZES)}, got {self.size!r}")
        for name in ("patch_length", "patch_num_layers", "char_num_layers", "hidden_size"):
            value = getattr(self, name)
            check(value is None or value > 0, name, f"must be > 0, got {value}")
        check(
            self.hidden_size is None or self.hidden_size % 64 == 0,
            "hidden_size",
            f"must be a multiple of 64 (heads are hidden/64), got {self.hidden_size}",
        )
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")

    def overrides(self) -> dict:
        names = ("patch_length", "patch_num_layers", "char_num_layers", "hidden_size")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def hf_config(self) -> NotaGenConfig:
        from models.notagen import NotaGenConfig

        return NotaGenConfig.from_size(self.size, dropout=self.dropout, **self.overrides())

    def build(self) -> NotaGenForCausalLM:
        """The model: loaded from ``init_from`` when given, else freshly initialised at this size."""
        from models.notagen import NotaGenForCausalLM

        if self.init_from:
            return load_model(self.init_from, dropout=self.dropout)
        return NotaGenForCausalLM(self.hf_config())


def load_model(path: str | Path, **config_overrides: Any) -> NotaGenForCausalLM:
    """A saved NotaGen model folder, with a clear error when it is not one."""
    from models.notagen import NotaGenForCausalLM

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a saved model folder (no config.json); "
            "train one with `clampdpo train sft` or import one with `clampdpo model import-notagen`"
        )
    return NotaGenForCausalLM.from_pretrained(folder, **config_overrides)
