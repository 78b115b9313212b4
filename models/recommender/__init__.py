"""Item recommender (issues B, 13): graph-filter collaborative filtering (`graph_filter`, GF-CF family), re-buy
signals and the next-basket baselines (`baskets`, `repeat`), the fitted object (`core`), the LightGBM second stage
(`ranker`), inference rules and reasons (`rules`), non-graph baselines (`baselines`). Imports numpy/scipy/torch/PyG
and models.* only."""
