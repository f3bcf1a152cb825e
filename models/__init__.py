"""Everything that knows the network: LSTM, next-vector head, word vectors, decoding, artifacts."""
