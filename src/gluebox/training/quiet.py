"""Keep the console to gluebox's own progress bar and lines, not library banners and warnings."""

from __future__ import annotations

import logging
import os


def quiet_libraries() -> None:
    """Keep the console to our progress bar and lines, not library banners."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import lightning  # noqa: F401  (sets its loggers to INFO on import; lower them after)
    from transformers.utils import logging as hf_logging

    from huggingface_hub.utils import logging as hub_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logging.set_verbosity_error()  # its download retries warn on stderr; gluebox's error line says what failed
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
