"""The thin training layer: models, offline data, training, checkpoints, DDP.

The core package never imports this subpackage; it imports the core. A trained
NRNN-family model enters the analysis functions through :func:`params_from_module`.

API index
---------
Models (:mod:`~nrnn_theory.train.models`)
    NoisyRNN, LipschitzRNN, AntisymmetricRNN, CoRNN, LSTMClassifier, GRUClassifier,
    MODELS, build_model, model_config
Adapters (:mod:`~nrnn_theory.train.adapters`)
    params_from_module, params_from_torch_rnn, noise_from_module, import_authors_state_dict
Data (:mod:`~nrnn_theory.train.data`)
    TaskData, load_task, TASKS, bundled_ucr_problems, read_idx, read_ts, read_ucr_text,
    split_indices
Training (:mod:`~nrnn_theory.train.loop`)
    fit, FitSettings, evaluate, OPTIMIZERS, FitHistory, TrainingDivergedError,
    default_lr_schedule
Penalties (:mod:`~nrnn_theory.train.penalties`)
    explicit_regularizer_penalty, ExplicitRegularizerPenalty, penalty_from_config
Checkpoints (:mod:`~nrnn_theory.train.checkpoint`)
    save_checkpoint, load_checkpoint, Checkpoint, CheckpointError, latest_checkpoint,
    best_checkpoint
Multi-process (:mod:`~nrnn_theory.train.distributed`)
    init_from_env, teardown, spawn_fit
Your own data and model files (:mod:`~nrnn_theory.train.user_files`)
    load_data_file, save_data_file, DataFile, load_model_file, save_model_file,
    TorchRNNClassifier
"""

from nrnn_theory.train.adapters import (
    import_authors_state_dict,
    noise_from_module,
    params_from_module,
    params_from_torch_rnn,
)
from nrnn_theory.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    best_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from nrnn_theory.train.data import (
    TASKS,
    TaskData,
    bundled_ucr_problems,
    load_task,
    read_idx,
    read_ts,
    read_ucr_text,
    split_indices,
)
from nrnn_theory.train.distributed import init_from_env, spawn_fit, teardown
from nrnn_theory.train.loop import (
    OPTIMIZERS,
    FitHistory,
    FitSettings,
    TrainingDivergedError,
    default_lr_schedule,
    evaluate,
    fit,
)
from nrnn_theory.train.models import (
    MODELS,
    AntisymmetricRNN,
    CoRNN,
    GRUClassifier,
    LipschitzRNN,
    LSTMClassifier,
    NoisyRNN,
    build_model,
    model_config,
)
from nrnn_theory.train.penalties import (
    ExplicitRegularizerPenalty,
    explicit_regularizer_penalty,
    penalty_from_config,
)
from nrnn_theory.train.user_files import (
    DataFile,
    TorchRNNClassifier,
    load_data_file,
    load_model_file,
    save_data_file,
    save_model_file,
)


__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "TASKS",
    "AntisymmetricRNN",
    "Checkpoint",
    "CheckpointError",
    "CoRNN",
    "DataFile",
    "ExplicitRegularizerPenalty",
    "FitHistory",
    "FitSettings",
    "GRUClassifier",
    "LSTMClassifier",
    "LipschitzRNN",
    "NoisyRNN",
    "TaskData",
    "TorchRNNClassifier",
    "TrainingDivergedError",
    "best_checkpoint",
    "build_model",
    "bundled_ucr_problems",
    "default_lr_schedule",
    "evaluate",
    "explicit_regularizer_penalty",
    "fit",
    "import_authors_state_dict",
    "init_from_env",
    "latest_checkpoint",
    "load_checkpoint",
    "load_data_file",
    "load_model_file",
    "load_task",
    "model_config",
    "noise_from_module",
    "params_from_module",
    "params_from_torch_rnn",
    "penalty_from_config",
    "read_idx",
    "read_ts",
    "read_ucr_text",
    "save_checkpoint",
    "save_data_file",
    "save_model_file",
    "spawn_fit",
    "split_indices",
    "teardown",
]
