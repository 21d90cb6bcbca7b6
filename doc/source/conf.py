"""Sphinx configuration for the oslo_kvs documentation."""

project = 'oslo.kvs'
copyright = 'oslo_kvs developers'
extensions = [
    'sphinx.ext.autodoc',
    'oslo_config.sphinxext',
]
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
exclude_patterns = []
html_theme = 'alabaster'
nitpicky = False
