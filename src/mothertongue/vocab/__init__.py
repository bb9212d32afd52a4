"""Vocabulary adaptation: fewer tokens per word in the target language.

    mothertongue tokenizer RECIPE --report        # how many tokens per word the base tokenizer spends
    mothertongue run RECIPE vocab.enabled=true    # extend it, initialise the new rows, train, measure

- `fertility`: tokens per word, characters per token, words cut into 3+ tokens; a recommendation.
- `extend`: new tokens the base tokenizer's own BPE reaches, English ids unchanged.
- `embeddings`: new input/output rows (mean-of-subtokens, mean, random), bits per byte, warm-up.
- `stage`: the `vocab` stage between translate and build.
"""
