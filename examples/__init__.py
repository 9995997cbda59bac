"""Bundled examples, installed as package data (`articlegen.examples`): `prompts.csv`, the demo's
25 prompts, and `corpus.txt`, text for training the tokenizers of local models.
"""
