"""Node servers, node clients and the local-cluster launcher."""
