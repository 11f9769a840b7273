"""MEDS, the Medical Event Data Standard, in and out of the workflow.

Out: ``export`` writes the cohort's data and metadata, ``predictions`` its task labels and the models'
predictions, in the schemas of the ``meds`` (0.4.1) and ``meds-evaluation`` (0.0.6) packages and in MEDS-Extract's
MIMIC-IV vocabulary, so that MEDS tools (ACES task configs, meds-evaluation) read the workflow's results as they
read a MEDS-Extract dataset. In: ``reader`` turns a MEDS dataset (``kind: meds``) into the canonical tables that
every later stage reads. ``tools`` runs ACES and MEDS-Extract, which need polars < 2, from their own environment.
"""
