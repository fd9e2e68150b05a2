"""What the model card of a translate model says of the task (a TaskCard)."""

from lstmkit.tasks.base import TaskCard

CARD = TaskCard(
    "sequence-to-sequence translator",
    "translation",
    "Multi30k task 1 (29,000 English image descriptions with their German, French and Czech "
    "translations, or the sample bundled with lstmkit): trained on the training lines, "
    "scored on the 1,014 validation lines.",
    """@inproceedings{elliott2016multi30k,
  title = {Multi30K: Multilingual English-German Image Descriptions},
  author = {Elliott, Desmond and Frank, Stella and Sima'an, Khalil and Specia, Lucia},
  booktitle = {Proceedings of the 5th Workshop on Vision and Language}, year = {2016}
}
@inproceedings{luong2015attention,
  title = {Effective Approaches to Attention-based Neural Machine Translation},
  author = {Luong, Minh-Thang and Pham, Hieu and Manning, Christopher D.},
  booktitle = {EMNLP}, year = {2015}
}""",
    "Translating short, simple sentences like image descriptions between the language pair it "
    "was trained on; a baseline and a teaching model for attention-based LSTM translation.",
    "Knows the vocabulary and style of short image descriptions only: longer sentences, other "
    "domains, names and rare words are translated unreliably, and nothing it writes is "
    "checked for faithfulness.",
    ("bleu", "chrf", "sentences"),
    ("multi30k",),
)
