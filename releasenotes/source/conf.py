"""Sphinx configuration for the oslo_kvs release notes."""

project = 'oslo.kvs release notes'
extensions = ['reno.sphinxext']
html_theme = 'alabaster'
