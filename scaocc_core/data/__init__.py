"""Data: manifests, the synthetic world, the Occ3D-nuScenes converter and the dataset."""
