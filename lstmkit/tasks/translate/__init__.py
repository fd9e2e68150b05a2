"""Machine translation: an attentional LSTM encoder-decoder (see ``task``)."""
