"""The bundled Jinja templates, installed as package data (`articlegen.templates`).

Read through `importlib.resources`; `articlegen.generator.templates` loads them.
"""
