"""The BentoML service and its runtimes over stored versions, version routing, the online store and the decision
log. Imports `models` and `store`; never `training` or `cli`, so a Bento ships without the training code."""
