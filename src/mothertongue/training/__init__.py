"""Parts of the train stage (`mothertongue.train`): data loading, trainer arguments, trainers, model card,
and CPU kernels (`training/cpu`).

    mothertongue train recipes/quickstart.yaml

Nothing here runs on its own.
"""
