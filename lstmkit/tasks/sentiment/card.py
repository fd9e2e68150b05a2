"""What the model card of a sentiment model says of the task (a TaskCard)."""

from lstmkit.tasks.base import TaskCard

CARD = TaskCard(
    "sentiment classifier for movie reviews",
    "text-classification",
    "The Large Movie Review Dataset v1.0 (IMDB; 50,000 labelled reviews, or the 6,000-review "
    "sample bundled with lstmkit): validation reviews held out by movie from the training "
    "split.",
    """@inproceedings{maas2011imdb,
  title = {Learning Word Vectors for Sentiment Analysis},
  author = {Maas, Andrew L. and Daly, Raymond E. and Pham, Peter T. and Huang, Dan and
        Ng, Andrew Y. and Potts, Christopher},
  booktitle = {ACL}, year = {2011}
}""",
    "Classifying English movie reviews as positive or negative; a baseline and a teaching "
    "model for LSTM classifiers.",
    "Trained on English IMDB movie reviews only: other domains, languages, sarcasm and "
    "mixed reviews are read less reliably; reviews longer than data.max_len tokens keep "
    "their head and tail only. Not for decisions about people.",
    ("accuracy", "f1", "roc_auc", "n"),
    ("imdb",),
)
