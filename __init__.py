"""omnidecide: recommendation and decisioning for omnichannel retail marketing.

The repository root is this package (setuptools maps `omnidecide` to `.`); its layers, lowest first:

- `omnidecide.models`   pure model code, no I/O;
- `omnidecide.store`    the model store, stages and file loading that training and serving share;
- `omnidecide.training` pipelines: data -> features -> fit -> evaluate -> register;
- `omnidecide.serving`  the BentoML service over stored versions;
- `omnidecide.cli`      the `omnidecide` command, on top of all of them.

Each layer imports only the layers above it in this list (`tests/test_layout.py` checks it).
"""
__version__ = "0.1.0"
