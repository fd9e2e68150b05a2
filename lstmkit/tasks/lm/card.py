"""What the model card of a lm model says of the task (a TaskCard)."""

from lstmkit.tasks.base import TaskCard

CARD = TaskCard(
    "language model",
    "text-generation",
    "The text named in the config (e.g. Tiny Shakespeare, 1 MB of Shakespeare's plays); "
    "the last data.val_fraction of it held out for validation.",
    """@misc{karpathy2015charrnn,
  title = {char-rnn}, author = {Karpathy, Andrej}, year = {2015},
  howpublished = {\\url{https://github.com/karpathy/char-rnn}}
}""",
    "Generating text in the style of its training text, scoring text (nats and bits per "
    "character), and pretraining encoders (ULMFiT).",
    "Generates fluent-looking but unreliable text: nothing it writes is checked for truth, "
    "and it reproduces its training text's style and biases.",
    ("bits_per_char", "nats_per_char", "perplexity", "tokens"),
)
