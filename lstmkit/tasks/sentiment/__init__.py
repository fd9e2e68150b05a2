"""Sentiment analysis on IMDB with an LSTM classifier (from scratch or LM-pretrained)."""
