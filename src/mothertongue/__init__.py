"""mothertongue: teach open language models a new language.

Importing the package is light on purpose: torch, transformers, trl and ctranslate2 load only
when the stage or backend that needs them runs.
"""

__version__ = "0.1.0"
