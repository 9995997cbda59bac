"""Training: fine-tune a model (or train one from scratch) on approved articles and corpus
files with the seed's recipe, keep the registry current, and check for memorisation.

`params` types a run's options, `corpus` reads and splits the documents, `selection` chooses
them (and what a resume continues with), `blocks` tokenises them, `recipe` turns the options
into the trainer's arguments, `recorder` keeps the registry row current, `store` keeps the
directories, `trainer` runs it all, `memorisation`, `plot` and `report` look at the result.
`starter` is the demo's own model, trained from scratch where no real model can be had.

Only the parameters are imported here: the trainer pulls in torch, transformers and
accelerate, seconds that a command which never trains should not pay. Import the rest from
its module.
"""

from articlegen.training.params import MODEL_NAME_PATTERN, TrainParams

__all__ = ["MODEL_NAME_PATTERN", "TrainParams"]
