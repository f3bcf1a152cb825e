"""Offline training: novel file -> jieba tokens -> word2vec -> NumPy LSTM -> artifact directory."""
