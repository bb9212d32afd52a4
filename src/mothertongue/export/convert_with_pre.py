"""llama.cpp's convert_hf_to_gguf.py with one change: a pre-tokenizer it cannot name by hash is
named from tokenizer.json instead of failing.

    python convert_with_pre.py LLAMA_CPP_DIR PRE MODEL_DIR --outfile F.gguf --outtype f16

The GGUF exporter runs this file as a script (never imports it), in a process of its own, as it
runs the converter itself: PRE is the name `gguf_pre_tokenizer` read from tokenizer.json
("gpt-2"), the remaining arguments are the converter's. The converter names a BPE pre-tokenizer
by hashing the ids a test string encodes to, which works for published models only; a tokenizer
trained on the spot has a hash nobody listed, and gets PRE, with a warning line on stderr that
starts with MOTHERTONGUE_PRE (the exporter reports the fallback when it sees it).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

MARK = "MOTHERTONGUE_PRE"


def main(argv: list[str]) -> None:
    checkout, pre, converter_args = Path(argv[0]), argv[1], argv[2:]
    script = checkout / "convert_hf_to_gguf.py"
    sys.argv = [str(script), *converter_args]
    # This file's own folder (sys.path[0]) holds modules named like the converter's imports
    # (gguf.py): the checkout and its gguf-py take its place.
    sys.path[0:1] = [str(checkout), str(checkout / "gguf-py")]
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    # Older converters define the method on `Model`, newer ones on `TextModel` (in the script or
    # in the `conversion` package they split out).
    owner = next(
        (
            c
            for c in (getattr(mod, n, None) for n in ("TextModel", "Model"))
            if c is not None and "get_vocab_base_pre" in vars(c)
        ),
        None,
    )
    if owner is None:
        from conversion.base import TextModel as owner  # noqa: N813
    known = owner.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            logging.getLogger("mothertongue").warning(
                "%s %s: pre-tokenizer hash not in llama.cpp's list; tokenizer.json declares the GPT-2 byte-level split",
                MARK,
                pre,
            )
            return pre

    owner.get_vocab_base_pre = get_vocab_base_pre
    mod.main()


if __name__ == "__main__":
    main(sys.argv[1:])
