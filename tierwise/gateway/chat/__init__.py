"""Chat requests: the answerers (planned, privacy, cascade, cache) and their composition."""
