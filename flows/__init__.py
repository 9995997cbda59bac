"""Prefect flows: orchestration only. Each flow calls into `articlegen`, `generator` and `db`.

- `generate-articles` (`flows.generate`): pending prompts become articles, one task per batch.
- `import-prompts` (`flows.import_prompts`): a CSV file or drop folder becomes prompts.
- `fan-out` (`flows.fan_out`): one generate-articles run per shard of the pending prompts.
- `fine-tune-model` (`flows.train`): a model trained on a corpus or approved articles.
"""

from articlegen.flows.fan_out import fan_out
from articlegen.flows.generate import generate_articles, run_generate
from articlegen.flows.import_prompts import import_prompts
from articlegen.flows.train import fine_tune_model

__all__ = ["fan_out", "fine_tune_model", "generate_articles", "import_prompts", "run_generate"]
