"""The cohort, its task labels and the models' predictions in MEDS, the Medical Event Data Standard.

Written in the schemas of the ``meds`` (0.4.1) and ``meds-evaluation`` (0.0.6) packages and in MEDS-Extract's
MIMIC-IV vocabulary, so that MEDS tools (ACES task configs, meds-evaluation) read the workflow's results as they
read a MEDS-Extract dataset. ``export``: data and metadata; ``predictions``: labels and predictions.
"""
