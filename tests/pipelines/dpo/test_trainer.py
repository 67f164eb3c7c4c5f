"""TRL's DPOTrainer on NotaGen: the tokenizer, the pad-masking collator, TRL's log-probs = NotaGen's, DPOP."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from models.patchilizer import PAD_ID
from models.tokenizer import EOS_CHAR, NotaGenTokenizer
from pipelines.dpo.config import DPORoundConfig
from pipelines.dpo.loss import dpop_loss
from pipelines.dpo.schedule import RoundSchedule
from pipelines.dpo.trainer import NotaGenDPOTrainer, PatchPreferenceCollator, training_args, trl_changes
from tests.conftest import DPO_BAD, DPO_GOOD, DPO_PROMPT, tiny_policy


def test_tokenizer_prompt_is_a_prefix_and_decodes_back():
    tok = NotaGenTokenizer()
    prompt = tok(DPO_PROMPT)["input_ids"]
    full = tok(DPO_PROMPT + DPO_GOOD + EOS_CHAR)["input_ids"]
    # bos patch + the prompt lines patched one by one ("%Traditional, Irish\n" takes two patches)
    assert len(prompt) == 16 * 5 and full[: len(prompt)] == prompt
    assert len(full) % 16 == 0 and full[-16:] == [1] + [2] * 15  # the eos patch closes a finished piece
    assert tok.decode(full) == DPO_PROMPT + DPO_GOOD
    # a bar becomes its own patch(es), padded after its eos char
    body = tok(DPO_PROMPT + DPO_GOOD)["input_ids"][len(prompt) :]
    assert PAD_ID in body and tok.decode(prompt + body) == DPO_PROMPT + DPO_GOOD


def test_collator_takes_pad_chars_out_of_the_completion():
    tok = NotaGenTokenizer()
    p = tok(DPO_PROMPT)["input_ids"]
    example = {
        "prompt_ids": p,
        "chosen_ids": tok(DPO_PROMPT + DPO_GOOD + EOS_CHAR)["input_ids"][len(p) :],
        "rejected_ids": tok(DPO_PROMPT + DPO_BAD + EOS_CHAR)["input_ids"][len(p) :],
    }
    out = PatchPreferenceCollator(pad_token_id=PAD_ID)([example])
    ids, mask = out["input_ids"], out["completion_mask"]
    assert (mask[:, : len(p)] == 0).all()
    assert ((ids == PAD_ID) & (mask == 1)).sum() == 0
    assert mask[0].sum() == sum(1 for i in example["chosen_ids"] if i != PAD_ID)


def test_trl_completion_log_probs_equal_notagen_log_likelihood():
    model = tiny_policy().eval()
    tok = NotaGenTokenizer()
    p = tok(DPO_PROMPT)["input_ids"]
    trainer = NotaGenDPOTrainer(
        model=model,
        args=training_args(DPORoundConfig(), "/tmp/unused", max_length=1024, seed=0),
        dpop_lambda=10.0,
        train_dataset=Dataset.from_list([{"prompt": DPO_PROMPT, "chosen": DPO_GOOD, "rejected": DPO_BAD}]),
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        flat = trainer.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
        ).log_probs.sum(1)
        for row, text in enumerate([DPO_GOOD, DPO_BAD]):
            patches = torch.tensor(tok.patch_ids(DPO_PROMPT + text + EOS_CHAR))[None]
            hier = model.patch_log_probs(patches, first_scored_patch=len(p) // 16)
            assert float(flat[row]) == pytest.approx(float(hier[0]), abs=1e-4)


def test_dpop_trainer_loss_is_the_hand_computed_dpop_and_training_raises_the_margin(tmp_path):
    model = tiny_policy()
    rows = [{"prompt": DPO_PROMPT, "chosen": DPO_GOOD, "rejected": DPO_BAD}] * 4
    cfg = DPORoundConfig(loss_type="dpop", beta=0.1, dpop_lambda=10.0, batch_pairs=2, epochs=4, lr=1e-3)
    trainer = NotaGenDPOTrainer(
        model=model,
        args=training_args(cfg, str(tmp_path), max_length=1024, seed=0),
        dpop_lambda=cfg.dpop_lambda,
        train_dataset=Dataset.from_list(rows),
        processing_class=NotaGenTokenizer(),
    )
    # before any step the policy is the reference: DPOP = −log σ(0) = log 2, rewards 0 (up to float32 noise in
    # sums of ~150 char log-probs, which λ = 10 magnifies)
    first_batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, first_batch)
    assert float(loss) == pytest.approx(math.log(2), abs=0.02)
    logs = _train(trainer, cfg)
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=0.01)
    assert logs[-1]["rewards/margins"] > 0.5 and logs[-1]["rewards/accuracies"] == 1.0
    assert logs[-1]["loss"] < logs[0]["loss"]
    # the logged loss is DPOP of the logged log-probs and rewards (β·log-ratio), recomputed by hand
    last = logs[-1]
    ref_c = last["logps/chosen"] - last["rewards/chosen"] / 0.1
    ref_r = last["logps/rejected"] - last["rewards/rejected"] / 0.1
    expected, _, _ = dpop_loss(
        torch.tensor([last["logps/chosen"]]),
        torch.tensor([last["logps/rejected"]]),
        torch.tensor([ref_c]),
        torch.tensor([ref_r]),
        0.1,
        10.0,
    )
    assert last["loss"] == pytest.approx(float(expected), rel=0.05, abs=1e-3)


def _train(trainer: NotaGenDPOTrainer, cfg: DPORoundConfig) -> list[dict[str, float]]:
    """The trainer group's loop in miniature (plain AdamW for DeepSpeed's engine): the round's schedule, TRL's
    loss of each batch of tokenized pairs with their reference log-probs, one row of metrics per step."""
    from torch.utils.data import DataLoader

    data = trainer.train_dataset
    data = data.select_columns([c for c in data.column_names if c.endswith(("_ids", "_logps"))])
    loader = DataLoader(data, batch_size=cfg.batch_pairs, shuffle=False, collate_fn=trainer.data_collator)
    schedule = RoundSchedule.of(len(loader), cfg)
    opt = torch.optim.AdamW(trainer.model.parameters(), lr=schedule.lr(0))
    trainer.model.train()
    trainer.take_metrics()  # what building the trainer logged
    logs: list[dict[str, float]] = []
    for _ in range(schedule.epochs):
        for batch in loader:
            if len(logs) == schedule.steps:
                break
            for group in opt.param_groups:
                group["lr"] = schedule.lr(len(logs))
            loss = trainer.compute_loss(trainer.model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad()
            logs.append({"loss": float(loss.detach()), **trainer.take_metrics()})
    assert len(logs) == schedule.steps == 8  # 4 pairs in batches of 2, 4 epochs
    return logs


def test_the_trl_internals_the_adapter_uses_are_still_there():
    trainer = NotaGenDPOTrainer(
        model=tiny_policy(),
        args=training_args(DPORoundConfig(), "/tmp/unused", max_length=1024, seed=0),
        dpop_lambda=10.0,
        train_dataset=Dataset.from_list([{"prompt": DPO_PROMPT, "chosen": DPO_GOOD, "rejected": DPO_BAD}]),
        processing_class=NotaGenTokenizer(),
    )
    assert trl_changes(trainer) == []
    # the check bites: an internal renamed away is named, with the TRL version
    from trl import DPOTrainer

    saved = DPOTrainer._precompute_ref_logps
    del DPOTrainer._precompute_ref_logps
    try:
        problems = trl_changes()
    finally:
        DPOTrainer._precompute_ref_logps = saved
    assert len(problems) == 1 and "_precompute_ref_logps is gone" in problems[0] and problems[0].startswith("TRL ")


def test_trainer_rejects_dpop_mixed_with_other_losses():
    args = training_args(DPORoundConfig(), "/tmp/unused", max_length=1024, seed=0)
    args.loss_type = ["dpop", "sft"]
    with pytest.raises(ValueError, match="dpop cannot be combined"):
        NotaGenDPOTrainer(
            model=tiny_policy(),
            args=args,
            dpop_lambda=10.0,
            train_dataset=Dataset.from_list([{"prompt": DPO_PROMPT, "chosen": DPO_GOOD, "rejected": DPO_BAD}]),
            processing_class=NotaGenTokenizer(),
        )
