"""The StrSR training loop: alternating generator and discriminator steps (paper §3.3-3.4, §4.1).

A step is what the official trainer counts as one (`global_step`): with a discriminator, a G step on batch 2k and a
D step on batch 2k + 1, each batch freshly degraded (RealESRGAN, through the pair pool); without one, a G step on
batch k. So 40k steps see 80k batches, as the official 40k do.
- G step (Eq. 11): the discriminator is a fixed critic (eval mode, no parameter gradients); its logits on the fake
  and, without gradient, on the real images enter RaGAN_G. Before the very first G step, one train-mode forward on
  that batch's real images runs each spectral norm's first power iteration, as the official trainer does.
- D step (Eq. 9): a fresh generator forward without gradient on the D batch, with the weights the G step just
  updated; then three train-mode forwards in the official order (real, fake, real + U[0, r1_sigma) noise), each
  running one power iteration, and RaGAN_D + lambda_R1 * approxR1.
The generator sees the LR as the official trainer builds it (bicubic to the GT size, then rounded to 8 bits, in
[-1, 1]); the VLM reads the raw LR; the VAE encodes a posterior sample (`model.latent`). Multi-GPU runs are launched
with `torchrun` (DDP, gloo on CPU, NCCL on GPU). Every random draw comes from generators seeded by (seed, batch,
rank, stream), so a resumed run continues bit-identically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shutil
import signal
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from strsr.degradation.realesrgan import DegradedPair
from strsr.degradation.realesrgan import model_input as official_model_input
from strsr.losses.gan import r1_noise
from strsr.losses.objectives import discriminator_loss, generator_loss
from strsr.model.build import resolve_device
from strsr.model.checkpoint import CheckpointError, load_generator
from strsr.train import checkpointing as ckpt
from strsr.train.components import Components, build_components
from strsr.train.config import TrainConfig, write_resolved
from strsr.train.data import CropSampler

log = logging.getLogger("strsr.train")

# Streams of the per-batch random generators.
_DEGRADATION, _R1_NOISE, _POSTERIOR = 0, 1, 2


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf; the run stops and its last checkpoint stays as it was."""


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    info = Dist(int(os.environ.get("RANK", 0)), world, int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def _load_plain(path: Path, device) -> dict:
    """A checkpoint file of tensors and plain values: a run folder from elsewhere cannot run code here."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        raise CheckpointError(f"{path}: refused, loading it would run code from the file"
                              + (f" ({refused[0].rstrip('.')})" if refused else "")) from None


def _batch_generator(device: torch.device, seed: int, batch: int, rank: int, stream: int) -> torch.Generator:
    return torch.Generator(device).manual_seed(((seed * 1_000_003 + batch) * 4099 + rank) * 8 + stream)


def cooldown_factor(step: int, max_steps: int, cooldown_steps: int) -> float:
    """The learning-rate multiplier of 0-based `step`: 1, then over the last `cooldown_steps` steps a half cosine
    from 1 towards 0 (the last step still moves, by (1 - cos(pi / N)) / 2)."""
    left = max_steps - step  # this step included
    if cooldown_steps <= 0 or left > cooldown_steps:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (cooldown_steps - left) / cooldown_steps))


@dataclass
class _Inputs:
    pair: DegradedPair
    target: torch.Tensor  # (B, 3, H, W) GT in [-1, 1]
    image: torch.Tensor  # (B, 3, H, W) the generator's input in [-1, 1]: the LR upsampled and rounded to 8 bits


class Trainer:
    def __init__(self, config: TrainConfig, *, resume: bool = False, overwrite: bool = False):
        """`resume` continues the run in run.output_dir; without it a folder that already holds checkpoints is
        refused unless `overwrite`, which deletes them (a fresh run would otherwise prune them by step number)."""
        self.config = config
        self.dist, self.device = _init_distributed(config.model.device)
        torch.manual_seed(config.run.seed)
        self.out = Path(config.run.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self._claim_output(resume, overwrite)
        self.c: Components = build_components(config, self.device)
        self.sampler = CropSampler(config.data, config.run.seed)
        self.step = 0
        self.skipped_images = 0
        self._spectral_norms_warm = False  # the official first-G-step calibration forward has run
        self._stop_requested = False
        self.autocast = self._autocast_context()
        # the recipe's learning rates, before a checkpoint's optimizer state replaces them: the schedule scales these
        # (loading an optimizer state makes new group dicts, so they are found again by index)
        self._base_lrs = [(opt, i, group["lr"]) for opt in (self.c.opt_g, self.c.opt_d) if opt is not None
                          for i, group in enumerate(opt.param_groups)]  # fmt: skip
        start = self._resume_source(resume)
        if start is not None:
            self._load(start)
        self.g = DDP(self.c.generator) if self.dist.world > 1 else self.c.generator
        self.d_train = DDP(self.c.discriminator) if self.dist.world > 1 and self.c.discriminator else None
        self.writer = None
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_resolved(config, self.out / "config.json")

    # ----------------------------------------------------------------- setup
    def _autocast_context(self):
        """bf16 autocast around the forward passes when the generator's weights are bf16 (model.precision)."""
        if self.c.generator.transformer.dtype == torch.bfloat16:
            return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext

    def _claim_output(self, resume: bool, overwrite: bool) -> None:
        existing = ckpt.latest_checkpoint(self.ckpt_root)
        if existing is None or resume:
            return
        if not overwrite:
            raise CheckpointError(f"{self.out}: already holds a run (checkpoints up to {existing.name}); continue it "
                                  "with --resume, start over with --overwrite (its checkpoints are deleted), or set "
                                  "another run.output_dir")  # fmt: skip
        if self.dist.main:
            shutil.rmtree(self.ckpt_root)
        self.dist.barrier()

    def _resume_source(self, resume: bool) -> Path | None:
        if self.config.run.resume_from:
            source = Path(self.config.run.resume_from)
            found = ckpt.latest_checkpoint(source) or ckpt.latest_checkpoint(source / "checkpoints")
            if (source / "training.pt").is_file():
                return source
            if found is None:
                raise CheckpointError(f"{source}: no complete checkpoint to resume from")
            return found
        return ckpt.latest_checkpoint(self.ckpt_root) if resume else None

    def _warm_spectral_norms(self, real: torch.Tensor) -> None:
        """The official calibration before the first G step: one train-mode forward on real images (B, 3, H, W) in
        [-1, 1], i.e. one power iteration per spectral norm from its random start."""
        self.c.discriminator.train()
        with torch.no_grad(), self.autocast():
            self.c.discriminator(real)
        self._spectral_norms_warm = True

    # ----------------------------------------------------------------- steps
    @property
    def batches_per_step(self) -> int:
        return 1 if self.c.discriminator is None else 2

    def _generator(self, batch: int, stream: int) -> torch.Generator:
        return _batch_generator(self.device, self.config.run.seed, batch, self.dist.rank, stream)

    def _pair(self, batch: int) -> DegradedPair:
        crops = self.sampler.batch(batch, self.dist.rank, self.dist.world, self.config.optim.batch_size)
        self.skipped_images += crops.skipped
        gen = self._generator(batch, _DEGRADATION)
        pair = self.c.degradation(crops.hr.to(self.device), gen)
        if self.c.queue is not None:
            pair = self.c.queue(pair, gen)
        return pair

    def _inputs(self, batch: int) -> _Inputs:
        pair = self._pair(batch)
        target = pair.hr * 2 - 1
        return _Inputs(pair, target, official_model_input(pair.lr_raw, target.shape[-2:]) * 2 - 1)

    def _generate(self, inputs: _Inputs, batch: int) -> torch.Tensor:
        """The generator's restoration of a batch; the VLM reads the raw LR, before upsampling."""
        condition = self.c.generator.condition_for(inputs.pair.lr_raw)
        return self.g(inputs.image, condition, generator=self._generator(batch, _POSTERIOR))

    def _check(self, loss: torch.Tensor, what: str, parts: dict) -> None:
        if not torch.isfinite(loss):
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in parts.items())
            last = ckpt.latest_checkpoint(self.ckpt_root)
            raise TrainingDiverged(
                f"step {self.step}: {what} loss is not finite ({values}); stopping. "
                f"Last good checkpoint: {last if last else 'none written yet'}"
            )

    def train_step(self) -> dict[str, float]:
        """One official step: a G step on batch 2k, then (with a discriminator) a D step on batch 2k + 1."""
        factor = cooldown_factor(self.step, self.config.run.max_steps, self.config.optim.lr_cooldown_steps)
        for opt, i, base in self._base_lrs:
            opt.param_groups[i]["lr"] = base * factor
        first = self.step * self.batches_per_step
        logged = self._g_step(first)
        if self.c.discriminator is not None:
            logged.update(self._d_step(first + 1))
        return logged

    def _g_step(self, batch: int) -> dict[str, float]:
        c, cfg = self.c, self.config
        inputs = self._inputs(batch)
        target = inputs.target
        if c.discriminator is not None and not self._spectral_norms_warm:
            self._warm_spectral_norms(target)
        # The discriminator is a fixed critic here (eval mode: stored spectral-norm vectors, no parameter gradients).
        self.g.train()
        if c.discriminator is not None:
            c.discriminator.eval().requires_grad_(False)
        with self.autocast():
            prediction = self._generate(inputs, batch)
            real_logits = fake_logits = None
            if c.discriminator is not None:
                fake_logits = c.discriminator(prediction)
                with torch.no_grad():
                    real_logits = c.discriminator(target)
            loss_g, parts = generator_loss(prediction.float(), target, real_logits, fake_logits, lpips=c.lpips,
                                           fdl=c.fdl, weights=c.weights)  # fmt: skip
        self._check(loss_g, "generator", parts)
        c.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        params_g = [p for group in c.opt_g.param_groups for p in group["params"]]
        parts["grad_norm_g"] = torch.nn.utils.clip_grad_norm_(params_g, cfg.optim.grad_clip)
        c.opt_g.step()
        self._last_images = (inputs.image.detach(), prediction.detach(), target)
        return {f"g/{k}": float(v) for k, v in parts.items()}

    def _d_step(self, batch: int) -> dict[str, float]:
        c, cfg = self.c, self.config
        inputs = self._inputs(batch)
        target = inputs.target
        with torch.no_grad(), self.autocast():  # the generator as the G step just left it
            fake = self._generate(inputs, batch).float()
        for p in c.discriminator.head_parameters():
            p.requires_grad_(True)
        c.discriminator.train()
        noise = r1_noise(target, cfg.loss.r1_sigma, cfg.loss.r1_noise, generator=self._generator(batch, _R1_NOISE))
        critic = self.d_train or c.discriminator
        with self.autocast():
            # three forwards in the official order: each train-mode forward runs one power iteration
            real_logits = [h.float() for h in critic(target)]
            fake_logits = [h.float() for h in critic(fake)]
            noisy_logits = [h.float() for h in critic(target + noise)]
            loss_d, parts = discriminator_loss(real_logits, fake_logits, noisy_logits, weights=c.weights)
        self._check(loss_d, "discriminator", parts)
        c.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        parts["grad_norm_d"] = torch.nn.utils.clip_grad_norm_(c.discriminator.head_parameters(), cfg.optim.grad_clip)
        c.opt_d.step()
        return {f"d/{k}": float(v) for k, v in parts.items()}

    # ----------------------------------------------------------------- checkpoints
    def save(self) -> Path:
        """Write a checkpoint atomically; a failed write (disk full) leaves the previous ones intact and raises a
        CheckpointError naming the folder and the cause."""
        try:
            return self._save()
        except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError with C++ frames
            shutil.rmtree(ckpt.staging_dir(self.ckpt_root, self.step), ignore_errors=True)
            cause = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
            raise CheckpointError(f"{self.ckpt_root}: cannot write the step-{self.step} checkpoint ({cause}); the "
                                  "earlier checkpoints are intact") from None

    def _save(self) -> Path:
        c = self.c
        staging = ckpt.staging_dir(self.ckpt_root, self.step)
        if self.dist.main:
            ckpt.prepare_staging(self.ckpt_root, self.step)
        self.dist.barrier()
        if self.dist.main:
            training = {
                "step": self.step,
                "preset": self.config.model.preset,
                "config": self.config.to_dict(),
                "opt_g": c.opt_g.state_dict(),
                "discriminator_heads": None if c.discriminator is None else _heads_state(c.discriminator),
                "opt_d": None if c.opt_d is None else c.opt_d.state_dict(),
                "fdl": None if c.fdl is None else c.fdl.state_dict(),
            }
            ckpt.write_shared(staging, c.generator, training)
        queue = None if c.queue is None else c.queue.state_dict()
        ckpt.write_rank(staging, self.dist.rank, {"rng": ckpt.rng_state(), "queue": queue,
                                                  "skipped_images": self.skipped_images})  # fmt: skip
        self.dist.barrier()
        final = ckpt.publish(self.ckpt_root, self.step, self.config.run.keep_last) if self.dist.main else staging
        self.dist.barrier()
        return final

    def _load(self, directory: Path) -> None:
        c = self.c
        training = _load_plain(directory / "training.pt", self.device)
        if training["preset"] != self.config.model.preset:
            raise CheckpointError(f"{directory}: checkpoint is for preset {training['preset']!r}, "
                                  f"this run trains {self.config.model.preset!r}")  # fmt: skip
        load_generator(c.generator, directory / "generator.safetensors")
        c.opt_g.load_state_dict(training["opt_g"])
        if c.discriminator is not None and training["discriminator_heads"] is not None:
            result = c.discriminator.load_state_dict(training["discriminator_heads"], strict=False)
            wrong = result.unexpected_keys + [k for k in result.missing_keys if not k.startswith("visual.")]
            if wrong:
                raise CheckpointError(f"{directory}: discriminator heads do not fit ({', '.join(wrong[:3])})")
            c.opt_d.load_state_dict(training["opt_d"])
            # Trained heads carry their power-iteration vectors. (The official trainer re-runs its calibration
            # forward after every restart; once more on converged vectors, skipped here to resume bit-identically.)
            self._spectral_norms_warm = True
        if c.fdl is not None and training["fdl"] is not None:
            c.fdl.load_state_dict(training["fdl"])
        rank_file = directory / f"rank-{self.dist.rank}.pt"
        if rank_file.is_file():
            rank_state = _load_plain(rank_file, "cpu")
            ckpt.set_rng_state(rank_state["rng"])
            self.skipped_images = rank_state["skipped_images"]
            if c.queue is not None and rank_state["queue"] is not None:
                c.queue.load_state_dict(rank_state["queue"])
        self.step = training["step"]
        if self.dist.main:
            log.info("resumed from %s at step %d", directory, self.step)

    # ----------------------------------------------------------------- loop
    def _request_stop(self, *_):
        self._stop_requested = True

    def _stop_agreed(self) -> bool:
        flag = torch.tensor(float(self._stop_requested))
        if self.dist.world > 1:
            flag = flag.to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _ensure_writer(self):
        """The TensorBoard writer (imported on first use), or None when run.tensorboard is off."""
        if self.writer is None and self.config.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        return self.writer

    def _record(self, scalars: dict[str, float]) -> None:
        """One line of metrics.jsonl (the step and the scalars), and the same scalars to TensorBoard."""
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **scalars}) + "\n")
        writer = self._ensure_writer()
        if writer is not None:
            for key, value in scalars.items():
                writer.add_scalar(key, value, self.step)

    def _log(self, logged: dict[str, float]) -> None:
        self._record({**logged, "lr/g": self.c.opt_g.param_groups[0]["lr"],
                      "data/skipped_images": self.skipped_images})  # fmt: skip

    def _log_samples(self) -> None:
        if self.writer is None:
            return
        lr, out, gt = (((x[:1].float().cpu() + 1) / 2).clamp(0, 1) for x in self._last_images)
        self.writer.add_images("samples/lr_out_gt", torch.cat([lr, out, gt]), self.step)

    def _log_grid_artifacts(self) -> None:
        """The periodic-artifact score of the last prediction, and its excess over the ground truth's (dB)."""
        from strsr.evaluation.grid_artifacts import artifact_period, grid_artifact_scores

        period = artifact_period(self.c.generator.preset)
        _, out, gt = (((x.float() + 1) / 2).clamp(0, 1) for x in self._last_images)
        if min(out.shape[-2:]) < 8 * period:  # the score needs 8 periods per side
            return
        score, excess = grid_artifact_scores(out, gt, period)
        self._record({"monitor/grid": score.mean().item(), "monitor/grid_excess": excess.mean().item()})

    def train(self) -> int:
        """Run until `run.max_steps`; returns the final step. Ctrl-C saves a checkpoint and stops cleanly."""
        cfg = self.config.run
        previous = signal.signal(signal.SIGINT, self._request_stop) if self._is_main_thread() else None
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc=f"stage {cfg.stage}", unit="step",
                   disable=not self.dist.main, dynamic_ncols=True)  # fmt: skip
        try:
            while self.step < cfg.max_steps:
                logged = self.train_step()
                self.step += 1
                bar.update()
                if self.dist.main and self.step % cfg.log_every == 0:
                    bar.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in logged.items() if "total" in k})
                    self._log(logged)
                if self.dist.main and cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._log_samples()
                if self.dist.main and cfg.grid_every and self.step % cfg.grid_every == 0:
                    self._log_grid_artifacts()
                stop = self._stop_agreed()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps or stop:
                    self.save()
                if stop:
                    log.info("interrupted: checkpoint saved at step %d", self.step)
                    break
        finally:
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self.writer is not None:
                self.writer.close()
        if self.skipped_images and self.dist.main:
            log.warning("%d unreadable or too-small training images were skipped", self.skipped_images)
        return self.step

    @staticmethod
    def _is_main_thread() -> bool:
        import threading

        return threading.current_thread() is threading.main_thread()

    def close(self) -> None:
        # DDP wrappers go before the process group: tearing down in the other order aborted runs at exit.
        self.g = self.d_train = None
        if self.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _heads_state(discriminator) -> dict[str, torch.Tensor]:
    """The discriminator's trainable heads (and their spectral-norm buffers), without the frozen trunk."""
    return {k: v for k, v in discriminator.state_dict().items() if not k.startswith("visual.")}
