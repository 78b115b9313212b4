"""Pure model code: the data contract (`schema`), metrics, media response curves, the recommender, churn and
allocator models. No file or network I/O beyond a model's own save/load; imports nothing else of omnidecide."""
