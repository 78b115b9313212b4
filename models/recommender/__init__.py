"""Item recommender (issue B): graph model over the user-item graph, repeat model, rules, second stage."""
