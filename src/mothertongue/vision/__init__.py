"""Vision: compose a vision-language model (image encoder + projector + the run's model) and train it.

    mothertongue vision recipes/vision_de.yaml
    mothertongue chat runs/vision_de --image photo.jpg

Read in this order: `images` (opening images safely), `data` (the image-text formats), `translate`
(their text through the translate machinery), `compose` (the LlavaForConditionalGeneration and its
processor), `features` (the frozen encoder's cached features), `train` (the two training stages),
`scorecard` (held-out scores), `stage` (the stage's `run`), `infer` (loading and generating for
chat, serve and export).
"""
