"""Churn predictor: an LSTM over each customer's transaction sequence (`net`, `model`), the features it reads
(`features`), and RFM segments, risk tiers and expected spend (`segments`). Pure: no file I/O beyond save/load."""
