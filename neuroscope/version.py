"""neuroscope's version (one place: the package, the manifest, ``--version``, setup.cfg)."""

__version__ = "0.1.0"
