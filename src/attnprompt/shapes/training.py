"""What the shapes trainers share: the loop (step or time budget, schedule, log, checkpoints, summary),
the learning-rate schedule, atomic saving of a model folder, and the CLI's train-then-probe ending."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

__all__ = ["LoopConfig", "add_loop_arguments", "config_from_args", "warmup_cosine", "replace_folder",
           "parallel_map", "run_loop", "train_and_probe"]

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C", bound="LoopConfig")


@dataclass
class LoopConfig:
    """The settings both trainers share (each trainer's ``TrainConfig`` extends them and may
    change their defaults)."""

    out: str
    time_budget: float = 600.0
    steps: int | None = None
    seed: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 50
    planned_steps: int | None = None
    """Length of the cosine schedule; default: ``steps`` or an estimate from the time budget."""
    pool: int = 3000
    refresh: int = 16
    """Pool entries replaced by fresh ones after every step."""
    threads: int = 2
    device: str = "cpu"
    workers: int = 1
    """Processes that build the initial pool (a GPU run is starved by one)."""
    log: str | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    probe_scenes: int = 200
    """Scenes for the quality probe after training (0: skip)."""


def add_loop_arguments(parser: argparse.ArgumentParser, config: type[LoopConfig], probe: str) -> None:
    """The trainers' shared flags, with ``config``'s defaults (``probe`` names the quality probe)."""
    d = {f.name: f.default for f in dataclasses.fields(config)}
    add = parser.add_argument
    add("--out", required=True)
    add("--time-budget", type=float, default=d["time_budget"],
        help="seconds, everything included (default %(default)s)")
    add("--steps", type=int, default=d["steps"], help="optional cap on optimiser steps")
    add("--seed", type=int, default=d["seed"])
    add("--batch-size", type=int, default=d["batch_size"])
    add("--lr", type=float, default=d["lr"])
    add("--weight-decay", type=float, default=d["weight_decay"], help="AdamW's, on matrices (default %(default)s)")
    add("--warmup", type=int, default=d["warmup"])
    add("--planned-steps", type=int, default=d["planned_steps"],
        help="cosine schedule length (default: --steps, else estimated from the time budget)")
    add("--pool", type=int, default=d["pool"])
    add("--refresh", type=int, default=d["refresh"], help="pool entries replaced after every step")
    add("--threads", type=int, default=d["threads"])
    add("--device", default=d["device"], help="torch device to train on (cpu, cuda, ...)")
    add("--workers", type=int, default=d["workers"], help="processes that build the initial pool")
    add("--log", default=d["log"], help="JSON lines: step, loss, lr, elapsed")
    add("--checkpoint-every", type=int, default=d["checkpoint_every"])
    add("--probe-scenes", type=int, default=d["probe_scenes"], help=f"scenes for the {probe} probe (0: skip)")


def config_from_args(config: type[C], args: argparse.Namespace) -> C:
    """``config`` filled from parsed flags (a flag ``--a-b`` sets field ``a_b``; the rest keep defaults)."""
    given = vars(args)
    return config(**{f.name: given[f.name] for f in dataclasses.fields(config) if f.name in given})


def warmup_cosine(step: int, lr: float, warmup: int, planned: int, floor: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor * lr`` at step ``planned``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, planned - warmup))
    return lr * (floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def replace_folder(folder: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling of ``folder`` with ``write(tmp)``, then swap it in.

    A crash or a kill at any point leaves either the old folder or the new one, never a mix.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(tmp)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int = 1) -> list[R]:
    """``[fn(x) for x in items]``, in ``workers`` processes when ``workers > 1``, in order.

    Pools of scenes are built this way on many-core machines. ``fn`` must be a module-level function
    whose result depends on its argument alone, so the pool is the same for any number of workers.
    The processes are spawned, not forked, so this is safe after CUDA has been initialised.
    """
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        return list(ex.map(fn, items, chunksize=max(1, len(items) // (8 * workers))))


def run_loop(
    cfg: LoopConfig,
    step: Callable[[float], float],
    save: Callable[[dict[str, Any], bool], None],
    *,
    start: float,
    floor: float,
    params: int,
    log_extra: Callable[[], dict[str, Any]] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run ``step(lr) -> loss`` until ``cfg.steps`` or the time budget (from ``start``) would be exceeded.

    Without ``cfg.planned_steps`` or ``cfg.steps``, the cosine schedule's length is estimated from
    the median duration of steps 2-10. Every ``log_every`` steps (and the first) a JSON record
    (step, loss, lr, ``log_extra()``, elapsed) goes to ``cfg.log`` and, with ``verbose``, stdout.
    ``save(extra, final)`` writes a checkpoint every ``checkpoint_every`` steps and the final model.
    Returns the summary, which is also logged.
    """
    if cfg.log:
        Path(cfg.log).parent.mkdir(parents=True, exist_ok=True)
    log = open(cfg.log, "a", encoding="utf-8") if cfg.log else None
    planned = cfg.planned_steps or cfg.steps
    losses: list[float] = []
    durations: list[float] = []
    done, step_time, stopped = 0, None, "steps"
    try:
        while True:
            elapsed = time.monotonic() - start
            if cfg.steps is not None and done >= cfg.steps:
                break
            if step_time is not None and elapsed + step_time > cfg.time_budget:
                stopped = "time"
                break
            if planned is None and done >= 10:
                per_step = float(np.median(durations[1:]))
                planned = max(cfg.warmup + 1, int((cfg.time_budget - elapsed) / per_step) + done)
            t0 = time.monotonic()
            lr = warmup_cosine(done, cfg.lr, cfg.warmup, planned or 10**9, floor)
            losses.append(step(lr))
            done += 1
            dt = time.monotonic() - t0
            step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
            if len(durations) < 10:
                durations.append(dt)
            if done % cfg.log_every == 0 or done == 1:
                rec = {"step": done, "loss": round(losses[-1], 4), "lr": lr, **(log_extra() if log_extra else {}),
                       "elapsed": round(time.monotonic() - start, 2)}
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if verbose:
                    print(json.dumps(rec), flush=True)
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                save({"step": done}, False)

        save({"step": done, "seed": cfg.seed}, True)
        summary: dict[str, Any] = {
            "steps": done, "planned_steps": planned, "stopped": stopped,
            "elapsed": round(time.monotonic() - start, 2), "params": params,
            "first_loss": losses[0] if losses else None,
            "last_loss": float(np.mean(losses[-10:])) if losses else None, "out": str(cfg.out),
        }
        if log:
            log.write(json.dumps({"summary": summary}) + "\n")
        return summary
    finally:
        if log:
            log.close()


def train_and_probe(cfg: LoopConfig, train: Callable[[Any], dict[str, Any]], name: str,
                    probe: Callable[..., dict[str, Any]]) -> int:
    """The trainers' CLI ending: train, print the summary, then probe the saved model (logged too)."""
    summary = train(cfg)
    print(json.dumps({"summary": summary}), flush=True)
    if cfg.probe_scenes > 0:
        result = probe(cfg.out, n_scenes=cfg.probe_scenes)
        print(json.dumps({name: result}), flush=True)
        if cfg.log:
            with open(cfg.log, "a", encoding="utf-8") as f:
                f.write(json.dumps({name: result}) + "\n")
    return 0
