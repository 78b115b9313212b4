"""What training and serving share: the BentoML model store with its stages (`registry`), loading canonical files
with quarantine (`io`) and loading a stored version into its model object (`loader`). Imports only
`omnidecide.models`; both `training` and `serving` import it, never each other."""
