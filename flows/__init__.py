"""Prefect flows: orchestration only. Each flow calls into `articlegen`, `generator` and `db`.

- `generate-articles` (`flows.generate`): pending prompts become articles, one task per batch.
- `import-prompts` (`flows.import_prompts`): a CSV file or drop folder becomes prompts.
- `fan-out` (`flows.fan_out`): one generate-articles run per shard of the pending prompts.
"""

from articlegen.flows.fan_out import fan_out
from articlegen.flows.generate import generate_articles
from articlegen.flows.import_prompts import import_prompts

__all__ = ["fan_out", "generate_articles", "import_prompts"]
