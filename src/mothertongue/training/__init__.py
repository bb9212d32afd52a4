"""Helpers of the train stage (`mothertongue.train`): data loading, trainer setup, model card.

    mothertongue train recipes/quickstart.yaml

Split out of train.py so each file stays readable; nothing here runs on its own.
"""
