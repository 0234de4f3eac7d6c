"""Embedding models behind one facade (embedder.py) and their ONNX backends."""
