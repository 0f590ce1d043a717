"""``gluebox cache``: put a model, its tokenizer and a task's data in the local caches.

Later runs, and the Docker image build, then need no network (set ``HF_HUB_OFFLINE=1``
and ``HF_DATASETS_OFFLINE=1`` to make sure nothing is fetched).
"""

from __future__ import annotations

from gluebox.config import TrainConfig
from gluebox.errors import GlueboxError


def cache(model_name_or_path: str, task_name: str, data_dir: str | None = None, with_data: bool = True) -> None:
    from gluebox.training.quiet import quiet_libraries
    from gluebox.data.sources import load_split, resolve_task
    from gluebox.training.pretrained import load_model, load_tokenizer
    from gluebox.tasks import GLUE_TASKS

    quiet_libraries()
    if task_name not in GLUE_TASKS:
        raise GlueboxError(f"unknown task '{task_name}'; choose one of {', '.join(GLUE_TASKS)}")
    config = TrainConfig(model_name_or_path=model_name_or_path, task_name=task_name, data_dir=data_dir)
    task = GLUE_TASKS[task_name]
    load_tokenizer(model_name_or_path)
    load_model(model_name_or_path, task, config.dropout_rate)
    print(f"model and tokenizer ready: {model_name_or_path}", flush=True)
    if not with_data:
        return
    if task.validation_splits:
        resolve_task(config)
    splits = ["train", *task.validation_splits, *task.test_splits] if task.validation_splits else list(task.test_splits)
    sizes = {split: len(load_split(config, task, split)) for split in splits}
    where = data_dir or "the datasets cache"
    print(f"data ready in {where}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()), flush=True)
