"""OSSA manifests shipped with ossabus and loaded by `ossabus up`; see README.md in this folder."""
