"""Requests to models called whole (embeddings, VQA): each call placed on one node."""
