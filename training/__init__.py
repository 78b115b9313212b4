"""Offline pipelines, data -> features -> fit -> evaluate -> register, the synthetic world, ML-100K, and the
lifecycle (backtests, retrain / monitor rules, data profiles, the export audit). Imports `models` and `store`;
never `serving` or `cli`."""
