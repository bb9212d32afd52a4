"""Text handling for translation: protection of code/markup/placeholders, segmentation, language id.

    python -c "from mothertongue.text.segment import segment; print(segment('Hi.\\n\\n- a `b` c'))"
"""
