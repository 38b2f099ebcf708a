"""Multi-process training with ``DistributedDataParallel``: set-up, teardown, workers.

Two ways in:

* ``torchrun --nproc_per_node=N -m nrnn_theory.cli train ...`` (one or several nodes).
  ``nrnn train`` sees torchrun's environment (``WORLD_SIZE``, ``RANK``,
  ``LOCAL_RANK``), calls :func:`init_from_env` (NCCL on GPUs, one GPU per process;
  gloo on CPU) and :func:`~nrnn_theory.train.fit` then trains with DDP. Only rank 0
  prints and writes the run directory.
* :func:`spawn_fit` starts ``world_size`` local processes with
  ``torch.multiprocessing.spawn`` (gloo on CPU) and trains one model, handing the
  weights back through a file. The worker is a module-level function so that the
  ``spawn`` start method can pickle it.

Teardown follows docs/environment.md, *DDP on CPU*: the recipe that made the
occasional abort at interpreter exit disappear. Drop the DDP model, ``gc.collect()``,
``barrier()``, then ``destroy_process_group()`` (:func:`teardown`).
"""

from __future__ import annotations

import gc
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


__all__ = ["DistributedContext", "init_from_env", "spawn_fit", "teardown"]


@dataclass(frozen=True)
class DistributedContext:
    """The process's place in a process group.

    Attributes
    ----------
    rank, world_size, local_rank : int
    backend : str
        ``"nccl"`` or ``"gloo"``.
    device : torch.device
        ``cuda:<local_rank>`` with NCCL, CPU with gloo.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that logs and writes files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"environment variable {name}: expected an integer, got {value!r}"
        ) from None


def init_from_env(device: str = "auto") -> DistributedContext | None:
    """Join the process group described by torchrun's environment variables.

    Parameters
    ----------
    device : str
        ``"auto"``: NCCL with one GPU per local rank when CUDA is available, gloo on
        CPU otherwise; ``"cpu"`` forces gloo on CPU; ``"cuda"`` requires GPUs.

    Returns
    -------
    DistributedContext or None
        ``None`` when the process was not started by torchrun (``WORLD_SIZE`` unset or
        1), so callers train in a single process.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend}
        if use_cuda:
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistributedContext(rank, world, local_rank, backend, dev)


def teardown() -> None:
    """Leave the process group cleanly (docs/environment.md, *DDP on CPU*).

    Call it after the last reference to the ``DistributedDataParallel`` model is gone
    (:func:`~nrnn_theory.train.fit` drops its wrapper before returning).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_worker(rank: int, world_size: int, port: int, job_file: str) -> None:
    """Entry point of one :func:`spawn_fit` process (module level, so spawn can pickle it)."""
    from safetensors.torch import save_file

    from nrnn_theory.train.data import load_task
    from nrnn_theory.train.loop import fit
    from nrnn_theory.train.models import build_model

    torch.set_num_threads(1)
    with open(job_file) as f:
        job = json.load(f)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    model = build_model(job["model"], generator=torch.Generator().manual_seed(job["model_seed"]))
    task = dict(job["task"])
    data = load_task(task.pop("name"), **task)
    history = fit(model, data, device="cpu", quiet=True, **job["fit"])
    if rank == 0:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        out = Path(job["out"])
        save_file(state, str(out / "weights.safetensors"))
        (out / "history.json").write_text(json.dumps(history.to_dict(), allow_nan=False))
    del model
    teardown()


def spawn_fit(
    model: dict[str, Any],
    task: dict[str, Any],
    fit_kwargs: dict[str, Any],
    *,
    world_size: int = 2,
    model_seed: int = 0,
    workdir: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train one model with ``world_size`` local gloo processes (DDP on CPU).

    Parameters
    ----------
    model : dict
        Model configuration (:func:`~nrnn_theory.train.build_model`), initialised from
        ``torch.Generator().manual_seed(model_seed)`` in every process.
    task : dict
        :func:`~nrnn_theory.train.load_task` arguments, including ``"name"``.
    fit_kwargs : dict
        Keyword arguments of :func:`~nrnn_theory.train.fit` (JSON-able; ``device`` and
        ``quiet`` are set by the workers).
    world_size : int
    model_seed : int
    workdir : str or Path, optional
        Folder for the hand-over files (default: a temporary folder).

    Returns
    -------
    state_dict : dict of str to Tensor
        The trained weights (rank 0's; DDP keeps all ranks equal).
    history : dict
        :meth:`FitHistory.to_dict` of rank 0.
    """
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        job = {"model": model, "task": task, "fit": fit_kwargs, "model_seed": model_seed}
        job["out"] = str(tmp)
        job_file = tmp / "job.json"
        job_file.write_text(json.dumps(job))
        mp.spawn(
            _spawn_worker,
            args=(world_size, _free_port(), str(job_file)),
            nprocs=world_size,
            join=True,
        )
        state = load_file(str(tmp / "weights.safetensors"))
        history = json.loads((tmp / "history.json").read_text())
    return state, history
