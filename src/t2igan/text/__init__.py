"""Text processing: the official tokenizer and the word vocabulary."""

from t2igan.text.vocab import (
    END_TOKEN,
    EncodedPrompt,
    PromptError,
    Vocabulary,
    VocabularyWarning,
    select_words,
    tokenize,
)

__all__ = [
    "END_TOKEN",
    "EncodedPrompt",
    "PromptError",
    "Vocabulary",
    "VocabularyWarning",
    "select_words",
    "tokenize",
]
