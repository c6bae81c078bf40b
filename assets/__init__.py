"""The shipped assets, installed as package data of ``mtopnet_core`` (``mtopnet_core.shipped``).

This file only lets a non-editable install carry the folder; see README.md here for what each
file is, its provenance and the command that rebuilds it.
"""
