"""What the model card of a speech model says of the task (a TaskCard)."""

from lstmkit.tasks.base import TaskCard

CARD = TaskCard(
    "spoken-digit recogniser",
    "automatic-speech-recognition",
    "The Free Spoken Digit Dataset (recordings 10-49 of each speaker and digit for "
    "training, 5-9 for validation, 0-4 the official test split), isolated or connected "
    "into digit strings.",
    """@misc{jackson2018fsdd,
  title = {Free Spoken Digit Dataset}, author = {Jackson, Zohar and others}, year = {2018},
  howpublished = {\\url{https://github.com/Jakobovski/free-spoken-digit-dataset}}
}""",
    "Recognising English spoken digits 0-9 in clean 8 kHz recordings.",
    "Knows ten words and a handful of speakers: other speakers, accents, noise and any "
    "other word are transcribed unreliably. Not for identifying people.",
    ("accuracy", "wer", "cer", "n"),
    ("fsdd",),
)
