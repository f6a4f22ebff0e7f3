"""Built-in neuroscope plugins.

Installed as the import package ``neuroscope_plugins``. Each module is an
ordinary plugin, listed in registry.toml and loaded through the same path as a
third-party package; it imports only neuroscope's public API.
"""
