"""The stages of the import, one module each. Pure functions; Beam wrappers live in ``transforms.beam``."""
