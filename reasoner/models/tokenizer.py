"""A small byte-level BPE tokenizer for models of our own (the bundled shapes model, tiny test models).

Byte-level BPE decodes back to exactly the text it encoded, whatever the text, so plans round-trip
and prompts outside the trained vocabulary still tokenize. It is saved as a standard
`PreTrainedTokenizerFast`, with the same special-token attributes (`image_token`, `boi_token`,
`eoi_token`) that Janus-Pro's Hugging Face tokenizer carries, so one loading path serves both.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Named as in Janus-Pro's tokenizer so templates and code read the same for every model.
BOS = "<|begin_of_sentence|>"
EOS = "<|end_of_sentence|>"
PAD = "<|pad|>"
IMAGE = "<image_placeholder>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IMAGE, BOI, EOI]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus`; special tokens take the first ids (pad is 0)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE, "boi_token": BOI, "eoi_token": EOI},
        clean_up_tokenization_spaces=False,
    )
