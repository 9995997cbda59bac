"""The throughput benchmark: one-at-a-time `transformers` against our engine and our flow.

`python -m bench` (or `make bench`) measures, in one run and interleaved, three systems on the
same workload: the baseline a tutorial reader would write (a loop of `model.generate`), the
generation engine alone, and the whole `generate-articles` flow. Every measurement runs in a
fresh process, so each has its own peak memory and none inherits another's warm caches. See
bench/README.md for the numbers and what each optimisation bought.
"""
