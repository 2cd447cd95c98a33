"""The CausalOcc network, one module per pipeline stage, composed in :mod:`.causal_occ`."""
