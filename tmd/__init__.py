"""tmd: deploy PyTorch models on Kubernetes ML nodes with Elasticsearch's trained-model deployment semantics."""

__version__ = "0.1.0"
