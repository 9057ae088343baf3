"""Engagement: daily aggregates per learner and class day, explainable signals, the page, export.

Import from the modules (``controllers``, ``live``, ``services``): this package is loaded by
Piccolo's app registry, so it imports nothing itself. See docs/engagement.md.
"""
