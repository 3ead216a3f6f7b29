"""Marelle: the portail famille core package."""

from marelle.celery import app as celery_app

__all__ = ["celery_app"]
