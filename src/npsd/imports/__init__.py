"""Bringing in history from other tools: ``npsd import`` and ``/v1/imports``.

:mod:`~npsd.imports.layouts` reads a file of one tool's layout into normalized rows (or per-row
errors); :mod:`~npsd.imports.service` writes them through the bulk path of ``PUT /nps``, 5,000
at a time, and runs uploads as durable jobs.
"""
