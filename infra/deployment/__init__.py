"""Deploying the app (app.py, chalicelib/) to the local cloud, and the demo that exercises it.

This package may know both sides: the app, and where the local cloud runs (endpoints.json).
"""
