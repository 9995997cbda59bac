"""articlegen: batch article generation from topic prompts.

The package holds what every layer shares: the exception tree (`errors`), the environment settings
(`settings`), the CSV import (`importing`) and the command line (`cli`). Generation lives in
`generator`, persistence in `db`, orchestration in `flows`.
"""

from importlib.metadata import version

__version__ = version("articlegen")

__all__ = ["__version__"]
