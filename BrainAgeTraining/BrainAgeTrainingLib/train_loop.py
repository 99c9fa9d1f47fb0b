"""Training of one cross-validation fold: epochs, validation, best epoch, checkpoints, logs.

The paper's settings by default: MSE loss, Adam (0.9, 0.9) with weight decay 1e-4, lr 1e-4
halved by ``ReduceLROnPlateau`` after 5 epochs without validation improvement,
batch 32, 70 epochs, Kaiming init, the best epoch chosen on validation loss. With
``average_from_epoch`` the fold's weights are instead the average of the weights at
the end of every epoch from that one on (``torch.optim.swa_utils.AveragedModel``), with
the BatchNorm statistics recomputed for those weights on the (unaugmented) training scans
(``update_bn``), as stochastic weight averaging prescribes.

Every epoch ends with a checkpoint (model, optimizer, scheduler, AMP scaler,
best-so-far, metric history, RNG states) written atomically, so a run killed at
any moment resumes from the last finished epoch. Shuffling, augmentation and
the torch RNG are re-derived from (seed, fold, epoch), so the resumed run is
bit-identical to an uninterrupted one (on the same hardware and thread count).
"""

from __future__ import annotations

import csv
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from BrainAgeLib.io import atomic_path
from BrainAgeLib.model import build_model

from .augment import augment, build_augmentation, sample_seed
from .batchnorm import freeze_statistics
from .cache import CachedSample
from .config import TrainConfig
from .ddp import DistContext, all_gather_objects, all_reduce_sum, barrier

METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_mae", "lr", "best_epoch", "seconds", "samples_per_s")


class CachedDataset(Dataset):
    """Model-ready arrays from the preparation cache, augmented per (epoch, index) when training."""

    def __init__(self, samples: list[CachedSample], config: TrainConfig, fold: int, train: bool) -> None:
        self.samples = samples
        self.pipeline = build_augmentation(config.augment) if train else None
        self.seed = config.seed
        self.fold = fold
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        x = torch.from_numpy(np.load(sample.array).astype(np.float32, copy=False))[None]
        if self.pipeline is not None:
            x = augment(self.pipeline, x, sample_seed(self.seed, self.fold, self.epoch, index))
        return x, torch.tensor(sample.age, dtype=torch.float32), index


class EpochSampler(Sampler[int]):
    """Deterministic per-epoch order, sharded over DDP ranks (padded so every rank has as many samples)."""

    def __init__(self, n: int, seed: int, fold: int, ctx: DistContext, shuffle: bool) -> None:
        self.n, self.seed, self.fold, self.ctx, self.shuffle = n, seed, fold, ctx, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))[self.ctx.rank::self.ctx.world_size]
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.fold, self.epoch, -1))
        order = torch.randperm(self.n, generator=g).tolist()
        world = self.ctx.world_size
        if len(order) % world:
            order += order[: world - len(order) % world]
        return order[self.ctx.rank::world]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


@dataclass
class FoldResult:
    fold: int
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)
    weights: Path | None = None  # the fold's exported weights: best epoch, or the average (average_from_epoch)
    average_val_mae: float | None = None  # validation MAE of the averaged weights


def _loader(dataset: CachedDataset, sampler: EpochSampler, batch: int, config: TrainConfig, device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=config.num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=False,
                      prefetch_factor=4 if config.num_workers > 0 else None)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))


def _plain_state(model: nn.Module, shift: float = 0.0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """CPU copy of the weights; with target scaling, the output layer is folded back to years."""
    inner = model.module if hasattr(model, "module") else model
    state = {k: v.detach().cpu().contiguous().clone() for k, v in inner.state_dict().items()}
    if (shift, scale) != (0.0, 1.0):
        state["class_layers.out.weight"] = state["class_layers.out.weight"] * scale
        state["class_layers.out.bias"] = state["class_layers.out.bias"] * scale + shift
    return state


def initial_weights(path: str, fold: int, shift: float = 0.0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Weights in years from a package folder (its fold ``fold``, else its first) or a .safetensors file,
    with the output layer re-expressed for targets standardised by (``shift``, ``scale``)."""
    source = Path(path)
    if source.is_dir():
        from BrainAgeLib.package import read_card

        files = [f["file"] for f in read_card(source).folds]
        source = source / (f"fold{fold}.safetensors" if f"fold{fold}.safetensors" in files else files[0])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(source)).items()}
    state["class_layers.out.weight"] = state["class_layers.out.weight"] / scale
    state["class_layers.out.bias"] = (state["class_layers.out.bias"] - shift) / scale
    return state


def target_scaling(train_samples: list[CachedSample], config: TrainConfig) -> tuple[float, float]:
    """(mean, SD) of the training ages when ``standardize_targets``, else (0, 1)."""
    if not config.standardize_targets or not train_samples:
        return 0.0, 1.0
    ages = np.array([s.age for s in train_samples], dtype=np.float64)
    return float(ages.mean()), float(max(ages.std(), 1.0))


def write_metrics(history: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(METRIC_COLUMNS))
            writer.writeheader()
            for row in history:
                writer.writerow({k: row.get(k) for k in METRIC_COLUMNS})


def predict_samples(model: nn.Module, dataset: CachedDataset, config: TrainConfig, ctx: DistContext,
                    device: torch.device, batch: int, shift: float = 0.0, scale: float = 1.0) -> dict[int, float]:
    """Predicted age per sample index (gathered from all ranks); ``shift + scale * output``."""
    sampler = EpochSampler(len(dataset), config.seed, dataset.fold, ctx, shuffle=False)
    loader = _loader(dataset, sampler, batch, config, device)
    model.eval()
    out: dict[int, float] = {}
    with torch.no_grad():
        for x, _, idx in loader:
            x = x.to(device, non_blocking=True)
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with _autocast(config, device):
                pred = model(x)[:, 0].float()
            out.update(zip(idx.tolist(), (shift + scale * pred.double()).cpu().tolist()))
    merged: dict[int, float] = {}
    for part in all_gather_objects(out, ctx):
        merged.update(part)
    return merged


def _autocast(config: TrainConfig, device: torch.device):
    if config.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def train_fold(
    fold: int,
    train_samples: list[CachedSample],
    val_samples: list[CachedSample],
    config: TrainConfig,
    fold_dir: Path,
    ctx: DistContext,
    device: torch.device,
    *,
    resume: bool = False,
    progress: bool = True,
    log=print,
    run_position: tuple[int, int] = (0, 1),
) -> FoldResult:
    """Train one fold (or finish it after a crash with ``resume``); returns the best epoch and weights."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = fold_dir / "checkpoint.pt"
    best_path = fold_dir / "best.safetensors"
    average_path = fold_dir / "average.safetensors"
    model = build_model(config.model, seed=config.seed * 1000 + fold).to(device)
    shift, scale = target_scaling(train_samples, config)
    if config.init_from:
        model.load_state_dict(initial_weights(config.init_from, fold, shift, scale), strict=True)
        if ctx.is_main:
            log(f"fold {fold}: starting from the weights in {config.init_from}")
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=tuple(config.betas),
                                 weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.lr_factor,
                                                           patience=config.lr_patience)
    averaged = AveragedModel(model) if config.average_from_epoch else None
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best_loss, best_epoch, history = 0, math.inf, -1, []
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch, best_loss, best_epoch = int(state["epoch"]), float(state["best_val_loss"]), int(state["best_epoch"])
        history = list(state["history"])
        if averaged is not None:
            averaged.load_state_dict(state["average"])
        if ctx.is_main:
            log(f"fold {fold}: resuming after epoch {start_epoch} (best epoch {best_epoch}, val loss {best_loss:.4f})")
    net: nn.Module = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    per_rank_batch = max(1, config.batch_size // ctx.world_size)
    train_set = CachedDataset(train_samples, config, fold, train=True)
    val_set = CachedDataset(val_samples, config, fold, train=False)
    sampler = EpochSampler(len(train_set), config.seed, fold, ctx, shuffle=True)
    writer = None
    if config.tensorboard and ctx.is_main:
        writer = _tensorboard(fold_dir / "tb", start_epoch, log)
    loss_fn = nn.MSELoss(reduction="sum")
    total_epochs = config.epochs
    for epoch in range(start_epoch, total_epochs):
        torch.manual_seed(sample_seed(config.seed, fold, epoch, -2))
        train_set.epoch = epoch
        sampler.set_epoch(epoch)
        loader = _loader(train_set, sampler, per_rank_batch, config, device)
        frozen = config.freeze_batchnorm_from_epoch is not None and epoch + 1 >= config.freeze_batchnorm_from_epoch
        if frozen and epoch + 1 == config.freeze_batchnorm_from_epoch:
            update_bn(loader, model, device)  # plain average over this epoch's augmented scans (DDP: rank 0's are broadcast)
            if ctx.is_main:
                log(f"fold {fold}: BatchNorm statistics recomputed on {len(train_set)} augmented training scans "
                    f"and fixed from epoch {epoch + 1} on")
        net.train()
        if frozen:
            freeze_statistics(model)
        t0 = time.perf_counter()
        loss_sum, count = 0.0, 0
        bar = tqdm(loader, desc=f"fold {fold} epoch {epoch + 1}/{total_epochs}", unit="batch", leave=False,
                   disable=not (progress and ctx.is_main), dynamic_ncols=True, file=sys.stderr)
        for x, y, _ in bar:
            x = x.to(device, non_blocking=True)
            y = (y.to(device, non_blocking=True) - shift) / scale
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with _autocast(config, device):
                pred = net(x)[:, 0]
            loss = loss_fn(pred.float(), y) / len(y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(y) * scale ** 2  # in years^2
            count += len(y)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{loss_sum / max(count, 1):.2f}", samples_s=f"{count * ctx.world_size / max(elapsed, 1e-9):.1f}")
        bar.close()
        loss_sum, count = all_reduce_sum([loss_sum, float(count)], ctx, device)
        train_seconds = time.perf_counter() - t0
        preds = predict_samples(net, val_set, config, ctx, device, per_rank_batch, shift, scale)
        errors = np.array([preds[i] - s.age for i, s in enumerate(val_samples)])
        val_loss = float(np.mean(errors ** 2)) if len(errors) else math.nan
        val_mae = float(np.mean(np.abs(errors))) if len(errors) else math.nan
        scheduler.step(val_loss)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch = val_loss, epoch + 1
        if averaged is not None and epoch + 1 >= config.average_from_epoch:
            averaged.update_parameters(model)
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(count, 1), 6), "val_loss": round(val_loss, 6),
               "val_mae": round(val_mae, 6), "lr": optimizer.param_groups[0]["lr"], "best_epoch": best_epoch,
               "seconds": round(time.perf_counter() - t0, 3), "samples_per_s": round(count / max(train_seconds, 1e-9), 2)}
        history.append(row)
        if ctx.is_main:
            if improved:
                with atomic_path(best_path) as tmp:
                    save_file(_plain_state(net, shift, scale), str(tmp))
            state = {"epoch": epoch + 1, "model": _plain_state(net), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "best_val_loss": best_loss,
                     "best_epoch": best_epoch, "history": history, "rng": _rng_state()}
            if averaged is not None:
                state["average"] = averaged.state_dict()
            with atomic_path(ckpt_path) as tmp:
                torch.save(state, tmp)
            write_metrics(history, fold_dir / "metrics.csv")
            if writer is not None:
                for key in ("train_loss", "val_loss", "val_mae", "lr", "samples_per_s"):
                    writer.add_scalar(key, row[key], epoch + 1)
                writer.flush()
            if (epoch + 1) % max(1, config.log_every) == 0 or epoch + 1 == total_epochs:
                log(f"fold {fold} epoch {epoch + 1}/{total_epochs}  train_loss {row['train_loss']:.3f}  "
                    f"val_loss {val_loss:.3f}  val_MAE {val_mae:.2f} y  lr {row['lr']:.2e}  "
                    f"{row['samples_per_s']:.1f} samples/s{'  *best*' if improved else ''}")
            done = (run_position[0] + (epoch + 1) / total_epochs) / run_position[1]
            log(f"[progress] {done:.4f} fold {fold} epoch {epoch + 1}/{total_epochs}")
        barrier(ctx)
    if writer is not None:
        writer.close()
    if averaged is None:
        return FoldResult(fold, best_epoch, best_loss, history, best_path)
    # averaged weights need their own BatchNorm statistics: one pass over the training scans as the
    # network will see them at prediction time (no augmentation), every rank over all of them
    plain_train = CachedDataset(train_samples, config, fold, train=False)
    update_bn(_loader(plain_train, EpochSampler(len(plain_train), config.seed, fold, DistContext(), False),
                      per_rank_batch, config, device), averaged.module, device)
    preds = predict_samples(averaged.module, val_set, config, ctx, device, per_rank_batch, shift, scale)
    average_mae = float(np.mean([abs(preds[i] - s.age) for i, s in enumerate(val_samples)])) if val_samples else math.nan
    if ctx.is_main:
        with atomic_path(average_path) as tmp:
            save_file(_plain_state(averaged.module, shift, scale), str(tmp))
        log(f"fold {fold}: weights averaged over epochs {config.average_from_epoch}-{total_epochs} "
            f"({int(averaged.n_averaged)}, BatchNorm statistics recomputed on {len(plain_train)} training scans), "
            f"val MAE {average_mae:.2f} y")
    return FoldResult(fold, best_epoch, best_loss, history, average_path, average_mae)


def _tensorboard(path: Path, start_epoch: int, log):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("tensorboard is not installed: metrics go to metrics.csv only (pip install tensorboard for TensorBoard logs)")
        return None
    return SummaryWriter(str(path), purge_step=start_epoch + 1 if start_epoch else None)


def fold_weights(fold_dir: Path, config: TrainConfig, best_epoch: bool = False) -> Path:
    """The file of a trained fold's exported weights: the average with ``average_from_epoch``, else (or with
    ``best_epoch``) the best epoch's."""
    return fold_dir / ("average.safetensors" if config.average_from_epoch and not best_epoch else "best.safetensors")


def load_fold_model(fold_dir: Path, config: TrainConfig, best_epoch: bool = False) -> nn.Module:
    """The exported network of a trained fold (eval mode, CPU); ``best_epoch``: the best epoch's even when averaged."""
    model = build_model(config.model)
    model.load_state_dict(load_file(str(fold_weights(fold_dir, config, best_epoch))), strict=True)
    return model.eval()
